"""The ``leaps-engine tune`` job: grid search of lambda_first, lambda_last and r (paper Supp. S2).

Part of the CLI (with :mod:`leaps_engine.cli`); the search itself is :mod:`leaps_engine.engine.tuning`.
Writes ``tune.json`` (the grid, every trial, the winner, the command) and ``tune.md`` to ``--out``.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import click
import torch

from leaps_engine.cli_progress import LazyBar
from leaps_engine.cli_synthesize import build_targets, build_verifier
from leaps_engine.config import SynthesisConfig, preset_for
from leaps_engine._io import atomic_path, exclusive_output, staged_folder
from leaps_engine.engine.adapters import create_adapter, get_adapter_entry
from leaps_engine.engine.synthesis import StepState
from leaps_engine.engine.tuning import PAPER_GRID, Trial, best_trial, tune
from leaps_engine.errors import LeapsError


def run_tune(
    *, model_name: str, weights: str | None, classes: tuple[str, ...], stimuli: tuple[str, ...], steps: int | None,
    size: tuple[int, int, int] | None, seed: int, device: torch.device, verifier_name: str | None,
    verifier_weights: str | None, lambda_first: tuple[float, ...], lambda_last: tuple[float, ...],
    r: tuple[float, ...], out_dir: str,
) -> None:
    """Run ``leaps-engine tune`` with parsed options (see ``leaps-engine tune --help``)."""
    entry = get_adapter_entry(model_name)
    preset = preset_for(model_name)
    config = SynthesisConfig.from_preset(model_name, steps=steps or max(1, preset.steps // 2), size=size, seed=seed)
    grid = {"lambda_first": lambda_first or PAPER_GRID["lambda_first"],
            "lambda_last": lambda_last or PAPER_GRID["lambda_last"], "r": r or PAPER_GRID["r"]}
    if not classes and entry.family == "embedded":
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
    model = create_adapter(model_name, weights=weights, device=device)
    verifier, verifier_weights = build_verifier(model, weights, verifier_name, verifier_weights, device)
    if verifier is None:
        raise LeapsError("tuning scores each setting on the verifier: name one with --verifier")
    points = len(grid["lambda_first"]) * len(grid["lambda_last"]) * len(grid["r"])
    click.echo(f"tuning {model_name} on {len(targets)} target(s): {points} settings of {config.steps} steps, "
               f"scored on {verifier.name}")
    progress = LazyBar(total=points * config.steps, desc="tuning", unit="step")
    finished: list[Trial] = []

    def step(state: StepState) -> None:
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
    command = shlex.join(["leaps-engine", *sys.argv[1:]])
    report = {
        "model": model_name, "verifier": {"name": verifier_name, "weights": verifier_weights},
        "steps": config.steps, "size": list(config.size), "seed": config.seed, "grid": grid, "command": command,
        "best": asdict(winner), "trials": [asdict(t) for t in trials],
    }
    lines = [f"> command: {command}  ", (f"> {model_name}, verifier {verifier_name}, {config.steps} steps, "
             f"{'x'.join(map(str, config.size))}, seed {config.seed}"), "",
             "| lambda_first | lambda_last | r | verifier top-1 % | verifier p(target) | model top-1 % | s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for trial in sorted(trials, key=Trial.rank_key, reverse=True):
        mark = " **(best)**" if trial is winner else ""
        lines.append(f"| {trial.lambda_first} | {trial.lambda_last} | {trial.r:g} | {trial.verifier_top1:.1f}{mark} | "
                     f"{trial.verifier_target_prob:.3f} | {trial.model_top1:.1f} | {trial.seconds:.1f} |")
    with atomic_path(out / "tune.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2))
    with atomic_path(out / "tune.md") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
