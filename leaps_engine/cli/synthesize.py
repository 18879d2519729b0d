"""``leaps-engine synthesize``: invert a model for each target class and write one result folder.

The folder's layout and ``result.json`` are :mod:`leaps_engine.outputs.results`'; it is built hidden beside
``--out`` and renamed into place whole (:func:`leaps_engine._io.staged_folder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from leaps_engine.cli.console import user_errors
from leaps_engine.cli.options import (
    acceleration_options,
    classes_option,
    forward_backend_option,
    model_option,
    parse_snapshots,
    parsed_by,
    setting_options,
    stimuli_option,
    threads_option,
)

if TYPE_CHECKING:
    from leaps_engine.engine.synthesis import StepState


@click.command()
@model_option("Model to invert (see `leaps-engine models`).")
@click.option("--weights", default=None,
              help="Model weights: its pretrained name (the default: 'kinetics400', or 'embedded' for the "
                   "embedded models), 'random', or a local checkpoint file.")
@classes_option("Target class; repeat for a batch. Default: the first class (embedded model only).")
@stimuli_option("Stimulus of the matching --class: a video (mp4, avi, webm, mkv, mov, gif), a folder of frames "
                "or a saved tensor. Repeat once per --class; with one --class, several prime it together "
                "(as does a folder of videos). The embedded model generates one if omitted.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first video (video i: seed+i).")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda:0.")
@click.option("--out", "out_dir", type=click.Path(), default="leaps-output", show_default=True,
              help="Output folder (built beside it and renamed into place when complete; an earlier result "
                   "there is replaced).")
@setting_options
@click.option("--paper", is_flag=True,
              help="The paper's setting: leave out the preset's further settings (pixels, no transformations, "
                   "one start); other options still apply.")
@click.option("--snapshots", default=None, metavar="STEPS", callback=parsed_by(parse_snapshots),
              help="Also save the videos at these steps, e.g. 100,500,2000 (paper Fig. 8).")
@click.option("--fps", type=int, default=5, show_default=True, help="Frame rate of the written videos.")
@click.option("--report", is_flag=True,
              help="Also write OUT/report.html: the videos beside their stimuli, loss curves and top-5 (one page).")
@acceleration_options
@forward_backend_option("the forward-only pass over the stimuli (their priming features)")
@threads_option
def synthesize(**options: object) -> None:
    """Synthesize one video per target class by inverting a model primed with a stimulus.

    Writes to --out: result.json (config, versions, per-step losses, final scores) and, per clip,
    video.mp4, video.gif, contact_sheet.png (stimulus row above the synthesized row) and video.pt; with
    --report also report.html.
    """
    with user_errors():
        run_synthesis(**options)


def run_synthesis(
    *, model_name: str, weights: str | None, classes: tuple[str, ...], stimuli: tuple[str, ...], seed: int,
    device: str, out_dir: str, verifier: str | None, verifier_weights: str | None, snapshots: list[int], fps: int,
    dtype: str, channels_last: bool, compile_step: bool, cuda_graphs: bool, kernels: str,
    forward_backend: str = "torch", report: bool = False, **settings: object,
) -> None:
    """Run ``leaps-engine synthesize`` with the parsed options; ``settings`` are :class:`SynthesisConfig`
    overrides (``None``: the preset's)."""
    from leaps_engine._io import exclusive_output, staged_folder
    from leaps_engine.config import Acceleration, SynthesisConfig
    from leaps_engine.engine.adapters import get_adapter_entry
    from leaps_engine.errors import LeapsError
    from leaps_engine.jobs import build_targets, check_device
    from leaps_engine.outputs.results import is_result_folder

    torch_device = check_device(device)
    acceleration = Acceleration(dtype=dtype, channels_last=channels_last, compile=compile_step,
                                cuda_graphs=cuda_graphs, kernels=kernels).resolve(torch_device.type)
    config = SynthesisConfig.from_preset(model_name, seed=seed, **settings)
    if snapshots and snapshots[-1] > config.steps:
        raise LeapsError(f"--snapshots step {snapshots[-1]} is beyond the last step ({config.steps})")
    targets, stimulus_labels = build_targets(model_name, get_adapter_entry(model_name).spec.class_names, classes,
                                             stimuli, seed, config)
    out = Path(out_dir)
    with exclusive_output(out):
        with staged_folder(out, replaceable=is_result_folder) as staging:
            clips, seconds, timing = _run_and_write(model_name, weights, targets, stimulus_labels, config,
                                                    acceleration, verifier, verifier_weights, torch_device, staging,
                                                    snapshots, fps, forward_backend)
        _print_report(clips, seconds, timing, out)
        if report:  # beside the published result, under the same lock
            from leaps_engine.cli.report import report_after_run

            report_after_run([out], out / "report.html", device)


def _run_and_write(model_name, weights, targets, stimulus_labels, config, acceleration, verifier_name,
                   verifier_weights, torch_device, out, snapshots, fps, forward_backend):
    """Synthesize and write every file under ``out`` (the staging folder); returns what the report prints."""
    import time

    from leaps_engine.engine.adapters import create_adapter
    from leaps_engine.engine.synthesis import synthesize
    from leaps_engine.export.backends import create_forward_backend
    from leaps_engine.jobs import build_verifier
    from leaps_engine.outputs.results import SnapshotWriter, clip_folder, run_summary, write_clip, write_summary

    model = create_adapter(model_name, weights=weights, device=torch_device)
    most_stimuli = max(len(t.stimulus) if isinstance(t.stimulus, (list, tuple)) else 1 for t in targets)
    forward = create_forward_backend(forward_backend, model, weights=model.weights,
                                     max_batch=max(2, most_stimuli))  # TensorRT sizes its engine for it
    verifier, verifier_weights = build_verifier(model, verifier_name, verifier_weights, torch_device)
    names = model.spec.class_names
    clip_dirs = [clip_folder(out, i, names[t.label]) for i, t in enumerate(targets)]
    size, seen = "x".join(map(str, config.size)), "x".join(map(str, model.spec.model_size(*config.size)))
    click.echo(f"{model_name} ({model.weights} weights), verifier "
               f"{verifier.name if verifier else 'none'}, {len(targets)} clip(s) of {size}"
               f"{f' (the model sees {seen})' if seen != size else ''}, {config.steps} steps on {torch_device}")

    progress = _ProgressBar(config.steps)
    snapshot_writer = SnapshotWriter(snapshots, clip_dirs, fps)
    started = time.perf_counter()
    try:
        result = synthesize(model, targets, verifier=verifier, config=config, callbacks=[progress, snapshot_writer],
                            acceleration=acceleration, forward_backend=forward)
    finally:
        progress.close()
    seconds = time.perf_counter() - started

    clips = [write_clip(result, i, clip_dirs[i], out, fps, stimulus_labels[i], snapshot_writer.paths[i])
             for i in range(len(targets))]
    write_summary(out, run_summary(model, model.weights, verifier, verifier_weights, config, result, clips,
                                   seconds, torch_device, forward.name))
    return clips, seconds, result.timing


class _ProgressBar:
    """A tqdm bar showing the step, the loss terms and the mean target probability."""

    def __init__(self, steps: int):
        from leaps_engine.cli.progress import LazyBar

        self.bar = LazyBar(total=steps, desc="synthesizing", unit="step")

    def __call__(self, state: StepState) -> None:
        from leaps_engine.jobs import hold_while_optimising

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


def _print_report(clips: list[dict], seconds: float, timing: dict[str, float], out: Path) -> None:
    from leaps_engine.outputs.results import RESULT_FILE

    rate = f", then {timing['steps_per_s']:.1f} steps/s" if "steps_per_s" in timing else ""
    click.echo(f"synthesis took {seconds:.1f} s (first step, with any compilation, "
               f"{timing['first_step_s']:.1f} s{rate})")
    for clip in clips:
        verifier = ""
        if clip["verifier_top1"] is not None:
            prob = clip["verifier_target_prob"]
            verifier = f"; verifier top-1 {clip['verifier_top1']!r}"
            verifier += f", p(target)={prob:.3f}" if prob is not None else ""
        click.echo(f"{clip['target_class']!r}: model top-1 {clip['model_top1']!r}, "
                   f"p(target)={clip['model_target_prob']:.3f}{verifier} -> {out / Path(clip['mp4']).parent}")
    click.echo(f"wrote {out / RESULT_FILE}")
