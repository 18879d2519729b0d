"""``leaps-engine tune``: grid-search lambda_1, lambda_L and r (paper Supp. S2), scored on the verifier.

The grid runs through :func:`leaps_engine.engine.tuning.tune`; this command writes ``tune.json`` and
``tune.md`` into a folder that appears whole (:func:`leaps_engine._io.staged_folder`).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from leaps_engine.cli.console import user_errors
from leaps_engine.cli.options import (
    classes_option,
    device_option,
    model_option,
    size_option,
    stimuli_option,
    threads_option,
    weights_option,
)

if TYPE_CHECKING:
    import torch

    from leaps_engine.engine.tuning import Trial


@click.command()
@model_option("Model to tune.")
@weights_option()
@classes_option("Target class; repeat (default for the embedded model: every class).")
@stimuli_option("Stimulus of the matching --class, as in synthesize (the embedded model generates them).")
@click.option("--steps", type=int, default=None,
              help="Steps per setting (default: half the preset's, as the paper's 1K).")
@size_option("Size of x* (default: the preset's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the videos and generated stimuli.")
@click.option("--restarts", type=int, default=None, metavar="N",
              help="Starting points per video, as in synthesize (default: the preset's; each costs a run).")
@click.option("--motion-sparsity", type=float, default=None, metavar="WEIGHT",
              help="layers: the velocities' shrink per step, as in synthesize (default: the preset's).")
@device_option()
@click.option("--verifier", "verifier_name", default=None, help="The network that scores each setting (preset's).")
@click.option("--verifier-weights", default=None, help="Verifier weights, as in synthesize.")
@click.option("--lambda-first", type=float, multiple=True, help="Grid values of lambda_1 (default 0.5 ... 1.0).")
@click.option("--lambda-last", type=float, multiple=True, help="Grid values of lambda_L (default 0.1 ... 0.5).")
@click.option("--r", "r", type=float, multiple=True, help="Grid values of r (default 1e-3 ... 1e-2).")
@click.option("--out", "out_dir", type=click.Path(), default="leaps-tune", show_default=True,
              help="Folder for tune.json and tune.md.")
@threads_option
def tune(**options: object) -> None:
    """Grid-search lambda_1, lambda_L and r (paper Supp. S2), scoring each setting on the verifier.

    Every setting synthesizes the same targets; the winner has the highest verifier top-1 (then verifier
    target probability, then model top-1). Writes the whole grid and the winner to --out.
    """
    from leaps_engine.jobs import check_device

    with user_errors():
        options["device"] = check_device(options["device"])
        run_tune(**options)


def run_tune(
    *, model_name: str, weights: str | None, classes: tuple[str, ...], stimuli: tuple[str, ...], steps: int | None,
    size: tuple[int, int, int] | None, seed: int, restarts: int | None, motion_sparsity: float | None,
    device: torch.device, verifier_name: str | None,
    verifier_weights: str | None, lambda_first: tuple[float, ...], lambda_last: tuple[float, ...],
    r: tuple[float, ...], out_dir: str,
) -> None:
    """Run ``leaps-engine tune`` with parsed options (see ``leaps-engine tune --help``)."""
    from leaps_engine._io import exclusive_output, staged_folder
    from leaps_engine.config import SynthesisConfig, preset_for
    from leaps_engine.engine.adapters import get_adapter_entry
    from leaps_engine.engine.tuning import PAPER_GRID
    from leaps_engine.jobs import build_targets

    entry = get_adapter_entry(model_name)
    preset = preset_for(model_name)
    config = SynthesisConfig.from_preset(model_name, steps=steps or max(1, preset.steps // 2), size=size, seed=seed,
                                         restarts=restarts, motion_sparsity=motion_sparsity)
    grid = {"lambda_first": lambda_first or PAPER_GRID["lambda_first"],
            "lambda_last": lambda_last or PAPER_GRID["lambda_last"], "r": r or PAPER_GRID["r"]}
    if not classes and entry.stimulus_source is not None:
        classes = tuple(str(i) for i in range(entry.spec.num_classes))  # every class, generated stimuli
    targets, _ = build_targets(model_name, entry.spec.class_names, classes, stimuli, seed, config)
    out = Path(out_dir)
    with exclusive_output(out), staged_folder(out, replaceable=_is_tune_folder) as staging:
        winner = _tune_into(staging, model_name, weights, verifier_name, verifier_weights, device, targets, config,
                            grid)
    click.echo(f"best: lambda_first={winner.lambda_first}, lambda_last={winner.lambda_last}, r={winner.r}: verifier "
               f"top-1 {winner.verifier_top1:.1f}%, model top-1 {winner.model_top1:.1f}% -> {out / 'tune.json'}")


def _is_tune_folder(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier tuning result (which a new run may replace)."""
    return (folder / "tune.json").is_file()


def _tune_into(out, model_name, weights, verifier_name, verifier_weights, device, targets, config, grid) -> Trial:
    """Run the grid and write tune.json and tune.md into ``out`` (the staging folder); returns the winner."""
    from leaps_engine.cli.progress import LazyBar
    from leaps_engine.engine.adapters import create_adapter
    from leaps_engine.engine.tuning import best_trial, tune
    from leaps_engine.errors import LeapsError
    from leaps_engine.jobs import build_verifier

    model = create_adapter(model_name, weights=weights, device=device)
    verifier, verifier_weights = build_verifier(model, verifier_name, verifier_weights, device)
    if verifier is None:
        raise LeapsError("tuning scores each setting on the verifier: name one with --verifier")
    points = len(grid["lambda_first"]) * len(grid["lambda_last"]) * len(grid["r"])
    click.echo(f"tuning {model_name} on {len(targets)} target(s): {points} settings of {config.steps} steps, "
               f"scored on {verifier.name}")
    progress = LazyBar(total=points * config.steps, desc="tuning", unit="step")
    finished: list[Trial] = []

    def step(state) -> None:  # noqa: ANN001 - a StepState
        progress.update(1)
        if state.step == 1:
            best = f", best verifier top-1 so far {best_trial(finished).verifier_top1:.0f}%" if finished else ""
            progress.describe(f"tuning: setting {len(finished) + 1}/{points}{best}")

    try:
        trials = tune(model, verifier, targets, config, grid, on_trial=finished.append, callbacks=[step])
    finally:
        progress.close()
    winner = best_trial(trials)
    _write_reports(out, model_name, verifier.name, verifier_weights, config, grid, trials, winner)
    return winner


def _write_reports(out, model_name, verifier_name, verifier_weights, config, grid, trials, winner) -> None:
    import json
    from dataclasses import asdict

    from leaps_engine._io import atomic_path
    from leaps_engine.outputs.tables import tune_grid

    command = shlex.join(["leaps-engine", *sys.argv[1:]])
    report = {
        "model": model_name, "verifier": {"name": verifier_name, "weights": verifier_weights},
        "steps": config.steps, "size": list(config.size), "seed": config.seed, "restarts": config.restarts,
        "motion_sparsity": config.motion_sparsity, "grid": grid, "command": command,
        "best": asdict(winner), "trials": [asdict(t) for t in trials],
    }
    lines = [f"> command: {command}  ", (f"> {model_name}, verifier {verifier_name}, {config.steps} steps, "
             f"{'x'.join(map(str, config.size))}, seed {config.seed}, {config.restarts} restart(s) per video, "
             f"motion sparsity {config.motion_sparsity}"), "",
             *tune_grid(report).markdown()]
    with atomic_path(out / "tune.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2))
    with atomic_path(out / "tune.md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
