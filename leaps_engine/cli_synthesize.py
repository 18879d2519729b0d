"""The ``leaps-engine synthesize`` job: models, targets, progress bar, snapshots, and the output files.

Part of the CLI (with :mod:`leaps_engine.cli`): the engine itself never prints or writes files.

Output layout of ``--out``::

    result.json                      config, versions, and per clip: scores, history, file paths
    clip_00_<class>/video.mp4        the synthesized clip (upscaled for viewing when small)
    clip_00_<class>/video.gif
    clip_00_<class>/contact_sheet.png   stimulus frames above the synthesized frames
    clip_00_<class>/video.pt         raw tensor [3, T, H, W] in [0, 1]
    clip_00_<class>/snapshots/step_00100.mp4   with --snapshots

Paths in result.json are relative to the folder that holds it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import click
import torch

from leaps_engine._io import atomic_path, exclusive_output, hold_point, staged_folder
from leaps_engine.cli_progress import LazyBar
from leaps_engine.config import Acceleration, SynthesisConfig, preset_for
from leaps_engine.engine import video_io
from leaps_engine.engine.adapters import VideoAdapter, create_adapter, get_adapter_entry
from leaps_engine.engine.stimulus import expand_stimulus
from leaps_engine.engine.step import check_acceleration, resolve_dtype
from leaps_engine.engine.synthesis import StepState, SynthesisResult, Target, resolve_class, synthesize
from leaps_engine.errors import LeapsError
from leaps_engine.export.backends import create_forward_backend

DISPLAY_MIN_SIDE = 192  # small clips are upscaled (nearest) to at least this many pixels for viewing
RESULT_FILE = "result.json"


def run_synthesis(
    *, model_name: str, weights: str | None, classes: tuple[str, ...], stimuli: tuple[str, ...],
    steps: int | None, size: tuple[int, int, int] | None, seed: int, device: str, out_dir: str,
    lambda_first: float | None, lambda_last: float | None, r: float | None, distance: str | None,
    priming_layers: float | None, method: str | None, objective: str | None, verifier_name: str | None,
    verifier_weights: str | None,
    snapshots: list[int], fps: int, dtype: str, channels_last: bool, compile_step: bool, cuda_graphs: bool,
    kernels: str, forward_backend: str = "torch",
) -> None:
    """Run ``leaps-engine synthesize`` with the parsed options (see ``leaps-engine synthesize --help``)."""
    torch_device = check_device(device)
    acceleration = Acceleration(dtype=dtype, channels_last=channels_last, compile=compile_step or cuda_graphs,
                                cuda_graphs=cuda_graphs, kernels=kernels)
    check_acceleration(acceleration, torch_device)
    config = SynthesisConfig.from_preset(
        model_name, steps=steps, size=size, seed=seed, lambda_first=lambda_first, lambda_last=lambda_last,
        r=r, distance=distance, priming_layers=priming_layers, method=method, objective=objective,
    )
    if snapshots and snapshots[-1] > config.steps:
        raise LeapsError(f"--snapshots step {snapshots[-1]} is beyond the last step ({config.steps})")
    targets, stimulus_labels = build_targets(model_name, get_adapter_entry(model_name).spec.class_names, classes,
                                             stimuli, seed, config)
    out = Path(out_dir)
    with exclusive_output(out), staged_folder(out, replaceable=is_result_folder) as staging:
        clips, seconds, timing = _run_and_write(model_name, weights, targets, stimulus_labels, config, acceleration,
                                                verifier_name, verifier_weights, torch_device, staging, snapshots,
                                                fps, forward_backend)
    _print_report(clips, seconds, timing, out)


def hold_while_optimising(state: StepState) -> None:
    """A synthesis callback: the ``optimise`` hold point (:func:`leaps_engine._io.hold_point`) at step 1."""
    if state.step == 1:
        hold_point("optimise")


def is_result_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a synthesis result (which a new run on the same output replaces)."""
    return (folder / RESULT_FILE).is_file()


def _run_and_write(model_name, weights, targets, stimulus_labels, config, acceleration, verifier_name,
                   verifier_weights, torch_device, out, snapshots, fps, forward_backend):
    """Synthesize and write every file under ``out`` (the staging folder); returns what the report prints."""
    entry = get_adapter_entry(model_name)
    model = create_adapter(model_name, weights=weights, device=torch_device)
    most_stimuli = max(len(t.stimulus) if isinstance(t.stimulus, (list, tuple)) else 1 for t in targets)
    forward = create_forward_backend(forward_backend, model, weights=str(weights or entry.pretrained),
                                     max_batch=max(2, most_stimuli))  # TensorRT sizes its engine for it
    verifier, verifier_weights = build_verifier(model, weights, verifier_name, verifier_weights, torch_device)
    names = model.spec.class_names
    clip_dirs = [out / f"clip_{i:02d}_{class_slug(names[t.label])}" for i, t in enumerate(targets)]
    size, seen = "x".join(map(str, config.size)), "x".join(map(str, model.spec.model_size(*config.size)))
    click.echo(f"{model_name} ({weights or entry.pretrained} weights), verifier "
               f"{verifier.name if verifier else 'none'}, {len(targets)} clip(s) of {size}"
               f"{f' (the model sees {seen})' if seen != size else ''}, {config.steps} steps on {torch_device}")

    progress = _ProgressBar(config.steps)
    snapshot_writer = _SnapshotWriter(snapshots, clip_dirs, fps)
    started = time.perf_counter()
    try:
        result = synthesize(model, targets, verifier=verifier, config=config, callbacks=[progress, snapshot_writer],
                            acceleration=acceleration, forward_backend=forward)
    finally:
        progress.close()
    seconds = time.perf_counter() - started

    clips = [write_clip(result, i, clip_dirs[i], out, fps, stimulus_labels[i], snapshot_writer.paths[i])
             for i in range(len(targets))]
    summary = run_summary(model, weights or entry.pretrained, verifier, verifier_weights, config, acceleration,
                          result, clips, seconds, torch_device, forward.name)
    with atomic_path(out / RESULT_FILE) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
    return clips, seconds, result.timing


def check_device(device: str) -> torch.device:
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise LeapsError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise LeapsError(f"device {device!r} asked for, but CUDA is not available here")
    return torch_device


def prepare_out_dir(out: Path) -> None:
    """Create the output folder and check it is writable before any work starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise LeapsError(f"output folder {out} cannot be written ({error.strerror or error})") from None


def build_targets(
    model_name: str, class_names: tuple[str, ...], classes: tuple[str, ...], stimuli: tuple[str, ...], seed: int,
    config: SynthesisConfig,
) -> tuple[list[Target], list[str | None]]:
    """Pair each --class with its stimuli (generated ones for the embedded model).

    One --class with several --stimulus values primes with all of them together; a --stimulus folder
    of videos does the same for its class. The baselines need no stimulus.
    """
    embedded = get_adapter_entry(model_name).family == "embedded"
    if not classes:
        if not embedded:
            raise LeapsError(f"--class is required for {model_name} (see `leaps-engine classes {model_name}`)")
        classes = (class_names[0],)
    indices = [resolve_class(label, class_names, model_name) for label in classes]
    if not stimuli:
        if not config.uses_stimulus:
            return [Target(i) for i in indices], [None] * len(indices)
        if not embedded:
            raise LeapsError(f"--stimulus is required for {model_name}: give one video of each --class")
        from leaps_engine.engine.embedded.generator import generate_stimulus

        targets = [Target(i, generate_stimulus(i, seed=seed + k)) for k, i in enumerate(indices)]
        return targets, [f"generated (class {i}, seed {seed + k})" for k, i in enumerate(indices)]
    if len(indices) == 1:
        groups = [[clip for value in stimuli for clip in expand_stimulus(value)]]
    elif len(stimuli) == len(indices):
        groups = [expand_stimulus(value) for value in stimuli]
    else:
        raise LeapsError(f"give one --stimulus per --class, or several for a single --class (got {len(indices)} "
                         f"classes and {len(stimuli)} stimuli)")
    targets = [Target(i, [str(p) for p in group] if len(group) > 1 else str(group[0]))
               for i, group in zip(indices, groups, strict=True)]
    return targets, [" + ".join(str(p) for p in group) for group in groups]


def build_verifier(
    model: VideoAdapter, model_weights: str | None, verifier_name: str | None, verifier_weights: str | None,
    device: torch.device,
) -> tuple[VideoAdapter | None, str | None]:
    """The verifier: the preset's unless named; 'none' disables R_feat. The model itself (same name and
    weights) is reused, so one forward pass serves both."""
    name = verifier_name or preset_for(model.name).verifier
    if name is None or name.lower() == "none":
        return None, None
    entry = get_adapter_entry(name)
    if verifier_weights is None:
        verifier_weights = "random" if model_weights == "random" else entry.pretrained
    model_weights = model_weights or get_adapter_entry(model.name).pretrained
    if name == model.name and verifier_weights == model_weights and model_weights != "random":
        return model, verifier_weights
    try:
        return create_adapter(name, weights=verifier_weights, device=device), verifier_weights
    except LeapsError as error:  # the model loaded: say that this is about the verifier, and what to do
        raise LeapsError(f"the verifier {name} (R_feat) could not be built: {error}; give it weights with "
                         "--verifier-weights PATH|random, another one with --verifier NAME, or drop R_feat "
                         "with --verifier none") from None


class _ProgressBar:
    """A tqdm bar showing the step, the loss terms and the mean target probability."""

    def __init__(self, steps: int):
        self.bar = LazyBar(total=steps, desc="synthesizing", unit="step")

    def __call__(self, state: StepState) -> None:
        hold_while_optimising(state)
        self.bar.update(1)
        if state.step % 10 == 0 or state.step == state.steps:
            means = {term: float(value.mean()) for term, value in state.losses.items()}
            shown = {"ce": f"{means['ce']:.3f}", "prim": f"{means['priming']:.3f}", "coh": f"{means['coherence']:.3f}",
                     "feat": f"{means['feature']:.2f}", "p": f"{float(state.target_probs.mean()):.3f}"}
            if means["prior"]:
                shown["prior"] = f"{means['prior']:.3f}"
            self.bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        self.bar.close()


class _SnapshotWriter:
    """Writes each clip as mp4 at the requested steps (paper Fig. 8)."""

    def __init__(self, steps: list[int], clip_dirs: list[Path], fps: int):
        self.steps = set(steps)
        self.clip_dirs = clip_dirs
        self.fps = fps
        self.paths: list[list[Path]] = [[] for _ in clip_dirs]

    def __call__(self, state: StepState) -> None:
        if state.step not in self.steps:
            return
        videos = state.videos()
        for index, clip_dir in enumerate(self.clip_dirs):
            path = clip_dir / "snapshots" / f"step_{state.step:05d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            video_io.write_mp4(path, videos[index], fps=self.fps, scale=_display_scale(videos[index]))
            self.paths[index].append(path)


def _display_scale(video: torch.Tensor) -> int:
    return max(1, math.ceil(DISPLAY_MIN_SIDE / min(video.shape[-2:])))


def write_clip(result: SynthesisResult, index: int, clip_dir: Path, out: Path, fps: int, stimulus: str | None,
               snapshots: list[Path]) -> dict:
    """Write one clip's files and return its entry of result.json."""
    clip_dir.mkdir(parents=True, exist_ok=True)
    video = result.videos[index]
    scale = _display_scale(video)
    stimulus_pixels = result.stimuli[index]
    files = {"mp4": clip_dir / "video.mp4", "gif": clip_dir / "video.gif",
             "contact_sheet": clip_dir / "contact_sheet.png", "tensor": clip_dir / "video.pt"}
    video_io.write_mp4(files["mp4"], video, fps=fps, scale=scale)
    video_io.write_gif(files["gif"], video, fps=fps, scale=scale)
    rows = [("synthesized", video)] if stimulus_pixels is None else [("stimulus", stimulus_pixels), ("synthesized", video)]
    video_io.write_contact_sheet(files["contact_sheet"], rows, scale=scale)
    video_io.write_tensor(files["tensor"], video)
    if stimulus_pixels is not None:
        files["stimulus_tensor"] = clip_dir / "stimulus.pt"
        video_io.write_tensor(files["stimulus_tensor"], stimulus_pixels)
    score = result.scores[index]
    entry = {
        "target_class": score.target_class,
        "target_index": score.target_index,
        "seed": result.seeds[index],
        "stimulus": stimulus,
        "model_top1": score.model_top1,
        "model_target_prob": score.model_target_prob,
        "model_top5": [{"class": name, "prob": prob} for name, prob in score.model_top5],
        "verifier_top1": score.verifier_top1,
        "verifier_target_prob": score.verifier_target_prob,
        "verifier_top5": None if score.verifier_top5 is None else
        [{"class": name, "prob": prob} for name, prob in score.verifier_top5],
        **{key: str(path.relative_to(out)) for key, path in files.items()},
        "snapshots": [str(path.relative_to(out)) for path in snapshots],
        "display_scale": scale,
        "history": {term: values[:, index].tolist() for term, values in result.history.items()},
    }
    return entry


def run_summary(model: VideoAdapter, model_weights: str, verifier: VideoAdapter | None, verifier_weights: str | None,
                config: SynthesisConfig, acceleration: Acceleration, result: SynthesisResult, clips: list[dict],
                seconds: float, device: torch.device, forward_backend: str) -> dict:
    return {
        "model": {"name": model.name, "weights": model_weights},
        "verifier": None if verifier is None else {"name": verifier.name, "weights": verifier_weights},
        "config": {**asdict(config), "size": list(config.size), "betas": list(config.betas)},
        "acceleration": {**asdict(acceleration), "dtype": str(resolve_dtype(acceleration, device)).removeprefix("torch."),
                         "kernels_selected": result.kernels, "kernels_fallback": result.kernels_fallback,
                         "forward_backend": forward_backend},
        "timing": {key: round(value, 4) for key, value in result.timing.items()},
        "model_input_size": list(model.spec.model_size(*config.size)),
        "verifier_input_size": None if verifier is None else list(verifier.spec.model_size(*config.size)),
        "priming_taps": result.taps,
        "coherence_tap": result.coherence_tap,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "synthesis_seconds": round(seconds, 3),
        "versions": _versions(),
        "clips": clips,
    }


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("leaps-engine", "torch", "torchvision", "pytorchvideo", "numpy", "av", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _print_report(clips: list[dict], seconds: float, timing: dict[str, float], out: Path) -> None:
    rate = f", then {timing['steps_per_s']:.1f} steps/s" if "steps_per_s" in timing else ""
    click.echo(f"synthesis took {seconds:.1f} s (first step, with any compilation, {timing['first_step_s']:.1f} s{rate})")
    for clip in clips:
        verifier = ""
        if clip["verifier_top1"] is not None:
            prob = clip["verifier_target_prob"]
            verifier = f"; verifier top-1 {clip['verifier_top1']!r}" + (f", p(target)={prob:.3f}" if prob is not None else "")
        click.echo(f"{clip['target_class']!r}: model top-1 {clip['model_top1']!r}, "
                   f"p(target)={clip['model_target_prob']:.3f}{verifier} -> {out / Path(clip['mp4']).parent}")
    click.echo(f"wrote {out / RESULT_FILE}")


def class_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40] or "class"
