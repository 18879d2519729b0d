"""The LEAPS synthesis loop: invert a frozen video classifier, primed by stimulus videos.

Data flow (DESIGN.md 8)::

    stimulus -> model spec preprocessing -> stimulus tap means (once)
    loop { x* -> model taps + logits -> CE, priming, coherence;  x* -> verifier BN inputs -> R_feat;
           backward (input gradient only); Adam; clamp to valid pixels }
    -> videos in [0, 1], per-term history, final scores

The loop returns results and calls callbacks; it never prints or writes files. Every video of a batch
has its own seed, its own loss (statistics are per video) and Adam state that never mixes with the
others', so a batch gives the same videos as separate runs (up to the rounding of batched kernels):
the optimiser steps the *sum* of the per-video losses, whose gradient for each video is that video's own.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from leaps_engine.config import Acceleration, SynthesisConfig
from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.engine.class_names import class_index, class_key
from leaps_engine.engine.forward import ForwardBackend, TorchForward
from leaps_engine.engine.objectives import LOSS_TERMS
from leaps_engine.engine.parameterization import create_parameterization
from leaps_engine.engine.restarts import best_rows, restart_seed
from leaps_engine.engine.step import LeapsObjective, priming_taps, to_verifier_space
from leaps_engine.engine.stimulus import LoadedStimulus, load_stimulus
from leaps_engine.errors import LeapsError, close_names

StimulusSource = str | os.PathLike | torch.Tensor | LoadedStimulus


@dataclass
class Target:
    """One video to synthesize: a class (name or index) and one or more stimuli of that class.

    ``stimulus`` is a path (video file, frame folder, saved tensor) or a tensor of pixels
    ``[3, T, H, W]`` in [0, 1]; a list primes with the mean embedding of several stimuli (Supp. S5).
    ``seed`` defaults to ``config.seed + position in the batch``. The baselines (``method`` deepdream or
    am) prime with no stimulus; one given to them is only kept for display, or, under the warp and
    layers parameterisations, is where x* starts. For models that make their own
    stimuli (the embedded ones: ``VideoAdapter.stimulus_source``) a target without one gets one generated.
    """

    label: str | int
    stimulus: StimulusSource | Sequence[StimulusSource] | None = None
    seed: int | None = None


@dataclass
class ClipScore:
    """Final scores of one synthesized video under the inverted model and the verifier."""

    target_index: int
    target_class: str
    model_target_prob: float
    model_top5: list[tuple[str, float]]
    verifier_target_prob: float | None = None
    verifier_top5: list[tuple[str, float]] | None = None

    @property
    def model_top1(self) -> str:
        return self.model_top5[0][0]

    @property
    def verifier_top1(self) -> str | None:
        return self.verifier_top5[0][0] if self.verifier_top5 else None


@dataclass
class StepState:
    """What callbacks see after each optimiser step (values measured before the step)."""

    step: int  # 1-based
    steps: int
    losses: dict[str, torch.Tensor]  # term -> [B], detached
    target_probs: torch.Tensor  # [B] model probability of each target class
    _video: Callable[[], torch.Tensor] = field(repr=False)  # x* in the model's space, computed on demand
    _spec_denormalize: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)

    def videos(self) -> torch.Tensor:
        """The current videos as pixels in [0, 1], ``[B, 3, T, H, W]`` on the CPU."""
        with torch.no_grad():
            return self._spec_denormalize(self._video().detach()).clamp(0, 1).cpu()


@dataclass
class SynthesisResult:
    """Synthesized videos ``[B, 3, T, H, W]`` in [0, 1], the stimuli shown to the model (first stimulus of
    each target, pixels ``[3, T, H, W]``, or ``None`` for a baseline run without one), the per-term
    history (term -> ``[steps, B]``), final scores; with ``config.restarts`` > 1, all of them of each
    video's kept restart (``kept_restarts``; every restart's last total loss: ``restart_losses``).
    ``acceleration`` is the run's resolved speed settings; ``kernels`` is the loss backend that served
    the run's last step; ``kernels_fallback`` says why ``auto`` dropped the fused kernels, if it did;
    ``term_gradients`` holds each term's input-gradient norm at the first and last step when
    ``synthesize(measure_term_gradients=True)`` asked for them."""

    videos: torch.Tensor
    stimuli: list[torch.Tensor | None]
    history: dict[str, torch.Tensor]
    scores: list[ClipScore]
    seeds: list[int]
    restart_losses: torch.Tensor  # [B, restarts]: each restart's total loss at the last step
    kept_restarts: list[int]  # [B]: the restart kept, 0 .. restarts - 1
    config: SynthesisConfig
    taps: list[str]
    coherence_tap: str | None
    timing: dict[str, float] = field(default_factory=dict)
    acceleration: Acceleration = field(default_factory=lambda: Acceleration().resolve("cpu"))
    kernels: str = "eager"
    kernels_fallback: str | None = None
    term_gradients: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # "first"/"last" -> term -> [B]


Callback = Callable[[StepState], None]


def resolve_class(label: str | int, class_names: Sequence[str], model_name: str) -> int:
    """Index of a class given by index or by name (:func:`class_index`); raises :class:`LeapsError` otherwise."""
    if isinstance(label, int) or (isinstance(label, str) and label.strip().lstrip("-").isdigit()):
        index = int(label)
        if not 0 <= index < len(class_names):
            raise LeapsError(f"class index {index} is out of range for {model_name} (0..{len(class_names) - 1})")
        return index
    index = class_index(label, class_names)
    if index is None:
        raise LeapsError(f"unknown class {label!r} for {model_name}"
                         f"{close_names(class_key(label), [class_key(name) for name in class_names])}")
    return index


def synthesize(
    model: VideoAdapter,
    targets: Sequence[Target],
    verifier: VideoAdapter | None = None,
    config: SynthesisConfig | None = None,
    callbacks: Sequence[Callback] = (),
    acceleration: Acceleration | None = None,
    forward_backend: ForwardBackend | None = None,
    measure_term_gradients: bool = False,
) -> SynthesisResult:
    """Synthesize one video per target by inverting ``model`` (LEAPS, paper Eq. 4), from
    ``config.restarts`` starting points per target, keeping the one with the lowest loss
    (:mod:`leaps_engine.engine.restarts`).

    Args:
        model: the frozen classifier to invert.
        targets: the (class, stimulus) pairs, synthesized together as one batch.
        verifier: the network whose BatchNorm statistics regularise x* (R_feat); ``None`` drops R_feat;
            ``model`` itself shares the model's forward pass.
        config: the method's settings (default: the model's preset).
        callbacks: called with a :class:`StepState` after every step.
        acceleration: dtype, channels-last, compile and kernel choices (default: :class:`Acceleration`).
        forward_backend: runs the forward-only pass over the stimuli (default: ``model`` in torch); see
            :func:`leaps_engine.export.backends.create_forward_backend`.
        measure_term_gradients: also record, at the first and the last step, the L2 norm of each weighted
            term's gradient with respect to the objective's input video (one extra backward pass per
            term at those two steps; :attr:`SynthesisResult.term_gradients`). Not with CUDA graphs.
    """
    config = config or SynthesisConfig.from_preset(model.name)
    config.validate()
    if not targets:
        raise LeapsError("nothing to synthesize: no targets given")
    device = _device_of(model)
    acceleration = (acceleration or Acceleration()).resolve(device.type)
    if forward_backend is not None and forward_backend.adapter is not model:
        raise LeapsError(f"the forward backend runs {forward_backend.adapter.name}, not the inverted model "
                         f"{model.name}")

    class_indices = [resolve_class(t.label, model.spec.class_names, model.name) for t in targets]
    if config.uses_stimulus and model.stimulus_source is not None:  # a domain that makes its own stimuli
        targets = [t if t.stimulus is not None else dataclasses.replace(
            t, stimulus=model.stimulus_source(index, config.seed + i if t.seed is None else t.seed))
            for i, (t, index) in enumerate(zip(targets, class_indices, strict=True))]
    if config.uses_stimulus:
        missing = [str(t.label) for t in targets if t.stimulus is None]
        if missing:
            why = ("LEAPS primes with a stimulus" if config.primes
                   else f"the {config.parameterization} parameterisation moves a stimulus's first frame")
            raise LeapsError(f"{why}, and none was given for class {missing[0]} "
                             "(the baselines deepdream and am need none with pixel or fourier)")
    stimulus_pixels = [[load_stimulus(s, model.spec, config.size) for s in _as_list(t.stimulus)] for t in targets]
    stimulus_means = []
    if config.primes:
        forward = forward_backend or TorchForward(model)
        stimulus_means = _stimulus_means(forward, stimulus_pixels, priming_taps(model, config), device)
    target_tensor = torch.tensor(class_indices, device=device)

    seeds = [config.seed + i if t.seed is None else t.seed for i, t in enumerate(targets)]
    first_stimuli = [group[0] if group else None for group in stimulus_pixels]
    # The batch's rows are (video, restart) pairs, video-major (leaps_engine.engine.restarts).
    restarts = config.restarts
    row_seeds = [restart_seed(seed, k) for seed in seeds for k in range(restarts)]
    row_stimuli = [stimulus for stimulus in first_stimuli for _ in range(restarts)]
    stimulus_means = [means.repeat_interleave(restarts, dim=0) for means in stimulus_means]
    target_tensor = target_tensor.repeat_interleave(restarts)
    x_star = create_parameterization(config, row_seeds, model.spec, device, row_stimuli)
    optimizer = torch.optim.Adam(x_star.parameters(), lr=config.lr, betas=config.betas, fused=device.type == "cuda")
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=0.0)
    scaler = torch.amp.GradScaler(device.type, enabled=acceleration.dtype == "float16")
    augment_generators = [torch.Generator().manual_seed(seed) for seed in row_seeds]
    if measure_term_gradients and acceleration.cuda_graphs:
        raise LeapsError("measuring each term's gradient needs extra backward passes, which CUDA graphs do not allow")
    term_gradients: dict[str, dict[str, torch.Tensor]] = {}
    # The whole run's history, allocated once on the device: nothing is kept per step, so memory does not
    # grow with the step count, and rows are written without a host sync.
    history = {term: torch.zeros((config.steps, len(row_seeds)), device=device)
               for term in (*LOSS_TERMS, "target_prob")}
    timing = {}

    with LeapsObjective(model, verifier, config, stimulus_means, target_tensor, acceleration) as objective:
        started = time.perf_counter()
        for step in range(1, config.steps + 1):
            if acceleration.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            video = _augment(x_star.video(), config, augment_generators)
            logits, losses = objective(video)
            if measure_term_gradients and step in (1, config.steps):
                term_gradients["first" if step == 1 else "last"] = _term_gradient_norms(losses, video, config.r)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["total"].sum()).backward()
            if step == 1:
                _warn_if_gradient_is_zero(x_star.parameters())
            scaler.step(optimizer)
            scaler.update()
            x_star.project(schedule.get_last_lr()[0])  # the rate of the step just taken
            schedule.step()
            target_probs = logits.detach().float().softmax(-1).gather(1, target_tensor[:, None])[:, 0]
            with torch.no_grad():  # copies: the next CUDA-graph replay may overwrite the step's outputs
                for term, value in (*losses.items(), ("target_prob", target_probs)):
                    history[term][step - 1] = value
            if step == 1:
                timing["first_step_s"] = seconds_since(started, device)
                started = time.perf_counter()
            if callbacks:  # callbacks see one row per video: its restart with the lowest loss at this step
                recorded = {term: history[term][step - 1] for term in LOSS_TERMS}
                rows = best_rows(recorded["total"], restarts)
                state = StepState(step, config.steps, {term: value[rows] for term, value in recorded.items()},
                                  history["target_prob"][step - 1][rows], lambda rows=rows: x_star.video()[rows],
                                  model.spec.denormalize)
                for callback in callbacks:
                    callback(state)
        if config.steps > 1:
            timing["steps_per_s"] = (config.steps - 1) / seconds_since(started, device)
        kernels, kernels_fallback = objective.kernels.in_use()

    rows = best_rows(history["total"][-1], restarts)
    kept_rows = rows.cpu()
    with torch.no_grad():
        final = x_star.video().detach()[rows]
    return SynthesisResult(
        videos=model.spec.denormalize(final).clamp(0, 1).cpu(),
        stimuli=first_stimuli,
        history={term: values[:, rows].cpu() for term, values in history.items()},
        scores=score_videos(model, verifier, final, class_indices),
        seeds=seeds,
        restart_losses=history["total"][-1].reshape(-1, restarts).cpu(),
        kept_restarts=(kept_rows % restarts).tolist(),
        config=config,
        taps=objective.priming_taps,
        coherence_tap=objective.coherence_tap,
        timing=timing,
        acceleration=acceleration,
        kernels=kernels,
        kernels_fallback=kernels_fallback,
        term_gradients={moment: {term: norms[kept_rows] for term, norms in by_term.items()}
                        for moment, by_term in term_gradients.items()},
    )


def _term_gradient_norms(losses: dict[str, torch.Tensor], video: torch.Tensor, r: float) -> dict[str, torch.Tensor]:
    """Per term of the total (R_coh and R_feat times ``r``, as they enter it), the L2 norm ``[B]`` of its
    gradient with respect to ``video`` ``[B, 3, T, H, W]``; terms that do not depend on it give 0."""
    weights = {"ce": 1.0, "priming": 1.0, "coherence": r, "feature": r, "prior": 1.0}
    norms = {}
    for term, weight in weights.items():
        if not losses[term].requires_grad:
            norms[term] = torch.zeros(video.shape[0])
            continue
        (gradient,) = torch.autograd.grad(weight * losses[term].sum(), video, retain_graph=True, allow_unused=True)
        norms[term] = (torch.zeros(video.shape[0]) if gradient is None
                       else gradient.float().flatten(1).norm(dim=1).detach().cpu())
    return norms


@torch.no_grad()
def score_videos(
    model: VideoAdapter, verifier: VideoAdapter | None, video: torch.Tensor, class_indices: Sequence[int]
) -> list[ClipScore]:
    """Final probabilities and top-5 of model and verifier for videos in the model's normalised space."""
    model_probs = model(video).float().softmax(-1).cpu()
    verifier_probs = None
    if verifier is not None:
        verifier_probs = verifier(to_verifier_space(model, verifier, video)).float().softmax(-1).cpu()
    scores = []
    for b, index in enumerate(class_indices):
        score = ClipScore(index, model.spec.class_names[index], float(model_probs[b, index]),
                          _top5(model_probs[b], model.spec.class_names))
        if verifier_probs is not None:
            verifier_index = _same_class_index(model.spec.class_names[index], verifier.spec.class_names)
            score.verifier_target_prob = None if verifier_index is None else float(verifier_probs[b, verifier_index])
            score.verifier_top5 = _top5(verifier_probs[b], verifier.spec.class_names)
        scores.append(score)
    return scores


def _top5(probs: torch.Tensor, class_names: Sequence[str]) -> list[tuple[str, float]]:
    values, indices = probs.topk(min(5, probs.numel()))
    return [(class_names[i], float(v)) for v, i in zip(values.tolist(), indices.tolist(), strict=True)]


def _same_class_index(name: str, class_names: Sequence[str]) -> int | None:
    return class_names.index(name) if name in class_names else None


def _stimulus_means(
    forward: ForwardBackend, stimulus_pixels: list[list[torch.Tensor]], taps: list[str], device: torch.device
) -> list[torch.Tensor]:
    """Per priming tap, the stimulus embeddings ``[B, C]`` (mean over each target's stimuli)."""
    per_target = []
    for group in stimulus_pixels:
        batch = forward.adapter.spec.normalize(torch.stack(group).to(device))  # [S, 3, T, H, W]
        _, tap_means = forward.tap_means(batch, taps)  # tap -> [S, C]
        per_target.append([means.mean(dim=0) for means in tap_means])  # tap -> [C]
    return [torch.stack([target[i] for target in per_target]) for i in range(len(taps))]


def _augment(video: torch.Tensor, config: SynthesisConfig, generators: list[torch.Generator]) -> torch.Tensor:
    """Transformation robustness (Olah et al. 2017), drawn per video from its own generator: a random
    spatial shift of up to ``jitter`` pixels (circular), zoom about the centre by up to ``scale_jitter``
    (bilinear, edges repeated), circular shift along time by up to ``time_shift`` frames, and the optional
    horizontal flip. ``[B, 3, T, H, W]`` in, the same out; the identity when every one is off."""
    if not (config.jitter or config.scale_jitter or config.time_shift or config.flip):
        return video
    transformed = []
    for b, generator in enumerate(generators):
        clip = video[b]  # [3, T, H, W]
        if config.jitter:
            dy, dx = torch.randint(-config.jitter, config.jitter + 1, (2,), generator=generator).tolist()
            clip = torch.roll(clip, shifts=(dy, dx), dims=(2, 3))
        if config.scale_jitter:
            zoom = 1.0 + config.scale_jitter * (2 * float(torch.rand((), generator=generator)) - 1)
            clip = _zoom(clip, zoom)
        if config.time_shift:
            shift = int(torch.randint(-config.time_shift, config.time_shift + 1, (), generator=generator))
            clip = torch.roll(clip, shifts=shift, dims=1)
        if config.flip and bool(torch.rand((), generator=generator) < 0.5):
            clip = clip.flip(3)
        transformed.append(clip)
    return torch.stack(transformed)


class ZeroGradientWarning(UserWarning):
    """The first step's input gradient is exactly zero: x* cannot move."""


def _warn_if_gradient_is_zero(parameters: Sequence[torch.Tensor]) -> None:
    if all(p.grad is None or not bool(p.grad.any()) for p in parameters):
        warnings.warn(ZeroGradientWarning(
            "the input gradient is exactly zero at the first step, so x* cannot change (a start with too "
            "little variation can leave every ReLU dead): use a larger init_scale"), stacklevel=3)


def _zoom(clip: torch.Tensor, zoom: float) -> torch.Tensor:
    """``clip`` ``[3, T, H, W]`` magnified ``zoom`` times about its centre (bilinear; edges repeated)."""
    frames = clip.transpose(0, 1)  # [T, 3, H, W]: frames as a batch of images
    theta = torch.tensor([[1 / zoom, 0.0, 0.0], [0.0, 1 / zoom, 0.0]], dtype=clip.dtype, device=clip.device)
    grid = nn.functional.affine_grid(theta.expand(len(frames), 2, 3), list(frames.shape), align_corners=False)
    zoomed = nn.functional.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return zoomed.transpose(0, 1)


def seconds_since(started: float, device: torch.device) -> float:
    """Seconds since ``started``, after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _as_list(stimulus: StimulusSource | Sequence[StimulusSource] | None) -> list[StimulusSource]:
    if stimulus is None:
        return []
    if isinstance(stimulus, (list, tuple)):
        if not stimulus:
            raise LeapsError("a target has an empty list of stimuli")
        return list(stimulus)
    return [stimulus]
