"""The LEAPS objective as one lean, traceable step: x* -> logits and every loss term, per video.

What makes it lean (DESIGN.md 5):

* the classifier and verifier are frozen, so backward computes the input gradient only;
* taps and BatchNorm inputs are captured by hooks installed once per run and returned as values,
  so ``torch.compile`` traces the whole step as one graph;
* the networks run under autocast (``Acceleration.dtype``) while every loss is computed in float32;
* when the verifier is the inverted model itself, one forward pass serves both;
* the two loss reductions come from the selected kernels (:mod:`leaps_engine.kernels.registry`).

Use it as a context manager: the hooks are removed when the block exits.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from leaps_engine.config import Acceleration, SynthesisConfig
from leaps_engine.engine import objectives
from leaps_engine.engine.adapters.base import TAP_FORMATS, VideoAdapter
from leaps_engine.errors import LeapsError
from leaps_engine.kernels.registry import LossKernels, select_kernels

AUTOCAST_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LeapsObjective:
    """The LEAPS objective for one batch: x* ``[B, 3, T, H, W]`` (model space) -> logits, terms ``[B]``.

    Args:
        model: the frozen classifier to invert.
        verifier: the network whose BatchNorm statistics give R_feat (``None``, or ``r == 0``, drops it);
            passing ``model`` itself reuses the model's forward pass.
        config: the method's settings.
        stimulus_means: per priming tap, the stimulus embeddings ``[B, C]`` (unused by the baselines).
        targets: class index per video ``[B]``.
        acceleration: dtype, channels-last, compile and kernel choices, resolved for the device
            (:meth:`Acceleration.resolve`; the run resolves them once).
    """

    def __init__(
        self,
        model: VideoAdapter,
        verifier: VideoAdapter | None,
        config: SynthesisConfig,
        stimulus_means: Sequence[torch.Tensor],
        targets: torch.Tensor,
        acceleration: Acceleration,
    ):
        device = targets.device
        if not acceleration.resolved:
            raise ValueError("LeapsObjective takes resolved settings: Acceleration(...).resolve(device.type)")
        self.model = model
        uses_feature = config.method == "leaps" and config.objective in ("full", "prim+feat") and config.r > 0
        self.verifier = verifier if uses_feature else None
        self.config = config
        self.priming_taps = priming_taps(model, config)
        all_weights = objectives.priming_weights(len(model.taps), config.lambda_first, config.lambda_last)
        self.weights = all_weights[: len(self.priming_taps)]
        uses_coherence = config.method == "leaps" and config.objective in ("full", "prim+coh")
        self.coherence_tap = coherence_tap(model, config.size) if uses_coherence else None
        self.stimulus_means = list(stimulus_means)
        self.targets = targets
        self.dtype = AUTOCAST_DTYPES[acceleration.dtype]
        self.channels_last = acceleration.channels_last
        self.kernels: LossKernels = select_kernels(acceleration.kernels, device)
        self._tap_outputs: dict[str, object] = {}
        self._bn_inputs: list[tuple[nn.Module, torch.Tensor]] = []
        self._handles = self._install_hooks()
        if self.channels_last:
            for network in {id(n): n for n in (model, self.verifier) if n is not None}.values():
                network.to(memory_format=torch.channels_last_3d)
        self._step = self._losses
        compiled = acceleration.compile
        # auto's first-use checks cannot run inside a traced graph: one eager pass runs them first.
        self._eager_first_pass = compiled and self.kernels.checks_first_use
        if compiled:
            mode = "reduce-overhead" if acceleration.cuda_graphs else None
            self._step = torch.compile(self._losses, dynamic=False, mode=mode)

    def __enter__(self) -> LeapsObjective:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the hooks from the networks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __call__(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``[B, K]`` and the terms ``total, ce, priming, coherence, feature, prior``, each ``[B]``
        float32 (terms the method or objective leaves out are 0)."""
        if self._eager_first_pass:
            self._eager_first_pass = False
            self._losses(video.detach())  # checks the fused kernels on these inputs before tracing
        return self._step(video)

    def _losses(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self._tap_outputs.clear()
        self._bn_inputs.clear()
        with torch.autocast(video.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            logits = self.model(self._memory_format(video))
            if self.verifier is not None and self.verifier is not self.model:
                self.verifier(self._memory_format(to_verifier_space(self.model, self.verifier, video)))
        ce = objectives.cross_entropy(logits, self.targets)
        method, config = self.config.method, self.config
        if method == "leaps":
            terms = objectives.compose(method, config.r, ce, **self._leaps_terms())
        elif method == "deepdream":
            prior = config.tv_weight * objectives.total_variation(video) + config.l2_weight * objectives.l2_prior(video)
            terms = objectives.compose(method, config.r, ce, prior=prior)
        else:  # "am": maximise the target logit
            terms = objectives.compose(method, config.r, ce, prior=config.l2_weight * objectives.l2_prior(video),
                                       target_logit=logits.float().gather(1, self.targets[:, None])[:, 0])
        self._tap_outputs.clear()  # drop references so nothing outlives the step
        self._bn_inputs.clear()
        return logits, terms

    def _leaps_terms(self) -> dict[str, torch.Tensor]:
        """L_prim, and R_coh and R_feat where the objective has them, from the captured activations."""
        to_canonical = TAP_FORMATS[self.model.tap_format]
        taps = {name: to_canonical(self._tap_outputs[name]) for name in self._tap_names()}
        terms = {"priming": objectives.priming_loss(
            [taps[name] for name in self.priming_taps], self.stimulus_means,
            self.weights, self.config.distance, self.kernels,
        )}
        if self.coherence_tap is not None:
            terms["coherence"] = objectives.temporal_coherence(taps[self.coherence_tap], self.config.coherence_margin)
        if self.verifier is not None:
            terms["feature"] = objectives.feature_statistics_loss(
                self._bn_inputs, per_video=self.config.bn_stats == "video", kernels=self.kernels)
        return terms

    def _tap_names(self) -> list[str]:
        if self.config.method != "leaps":
            return []
        return list(dict.fromkeys([*self.priming_taps, *filter(None, [self.coherence_tap])]))

    def _memory_format(self, video: torch.Tensor) -> torch.Tensor:
        return video.contiguous(memory_format=torch.channels_last_3d) if self.channels_last else video

    def _install_hooks(self) -> list[torch.utils.hooks.RemovableHandle]:
        modules = dict(self.model.model.named_modules())
        handles = []
        for name in self._tap_names():
            def record_output(module: nn.Module, args: object, output: object, name: str = name) -> None:
                self._tap_outputs[name] = output

            handles.append(modules[name].register_forward_hook(record_output))
        if self.verifier is not None:
            def record_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                self._bn_inputs.append((module, args[0]))

            handles.extend(layer.register_forward_pre_hook(record_input) for layer in verifier_bn_layers(self.verifier))
        return handles


def priming_taps(model: VideoAdapter, config: SynthesisConfig) -> list[str]:
    """The first ``floor(priming_layers * L)`` taps of ``model`` (at least one)."""
    return list(model.taps[: objectives.priming_tap_count(len(model.taps), config.priming_layers)])


class CoherenceWarning(UserWarning):
    """No tap has two frames at the run's size, so R_coh is 0 for the run."""


def coherence_tap(model: VideoAdapter, size: tuple[int, int, int]) -> str | None:
    """The tap R_coh is computed on for x* of ``size`` (T, H, W): the deepest tap with at least two frames
    (T' >= 2) at the size the model sees. R_coh compares consecutive frames (paper Eq. 2) on the last
    tap, which this is whenever it qualifies; where none has two frames it warns and returns ``None``."""
    shapes = model.tap_shapes(size)
    for name in reversed(model.taps):
        if shapes[name][1] >= 2:
            return name
    warnings.warn(f"no tap of {model.name} has two frames when it sees {'x'.join(map(str, size))} "
                  f"(as {'x'.join(map(str, model.spec.model_size(*size)))}): R_coh is 0 for this run",
                  CoherenceWarning, stacklevel=3)
    return None


def to_verifier_space(model: VideoAdapter, verifier: VideoAdapter, video: torch.Tensor) -> torch.Tensor:
    """A video ``[B, 3, T, H, W]`` in the model's normalised space, re-normalised for the verifier."""
    return verifier.spec.normalize(model.spec.denormalize(video))


def verifier_bn_layers(verifier: VideoAdapter) -> list[nn.Module]:
    """The verifier's BatchNorm3d layers with running statistics (the inputs of R_feat)."""
    layers = [m for m in verifier.model.modules() if isinstance(m, nn.BatchNorm3d) and m.running_mean is not None]
    if not layers:
        raise LeapsError(f"verifier {verifier.name} has no BatchNorm3d layer with running statistics; R_feat needs one")
    return layers
