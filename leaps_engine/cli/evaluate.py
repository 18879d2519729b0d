"""``leaps-engine evaluate``: score the videos of result folders and compare settings.

The scoring is :func:`leaps_engine.evaluation.evaluate_results`; this command prints its table
(:func:`leaps_engine.outputs.tables.quality_table`) and writes it to ``--out``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from leaps_engine.cli.console import check_writable_file, user_errors
from leaps_engine.cli.options import device_option, forward_backend_option, table_options, threads_option
from leaps_engine.config import FORWARD_BACKENDS, TABLE_FORMATS
from leaps_engine.errors import LeapsError


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(), metavar="PATH...")
@click.option("--evaluator", default=None, metavar="NAME",
              help="Also score every clip with this network (any of `leaps-engine models`, e.g. x3d_m).")
@click.option("--evaluator-weights", default=None, help="Evaluator weights (default: its pretrained weights).")
@device_option()
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Clips per forward pass.")
@click.option("--splits", type=click.IntRange(min=1), default=10, show_default=True,
              help="Inception Score splits (each holds at least as many videos as there are classes).")
@table_options
@forward_backend_option("the scoring networks")
@click.option("--group-by", default="model,method,objective,distance,priming_layers,verifier", metavar="KEYS",
              help="Comma-separated result.json keys to group runs by: model, verifier or any config field "
                   "(default: model, method, objective, distance, priming_layers, verifier).")
@threads_option
def evaluate(**options: object) -> None:
    """Score the videos of result folders and compare settings (accuracy, Inception Score, frame PSNR/SSIM).

    Each PATH is a result folder of `leaps-engine synthesize`, a folder searched recursively for result.json
    files, or a manifest (.txt, one path a line; .json, a list of paths). Every clip is re-scored by its run's
    model and verifier, and by --evaluator if given; runs are grouped by --group-by. `--format json` prints
    one object per group with the group keys, n_videos, top1_/top5_ model/verifier/evaluator (percent),
    inception_score_* {mean, std}, psnr/ssim of the synthesized videos and of their stimuli, and
    high_frequency_ratio (their spatial energy above half the Nyquist frequency, synthesized over stimulus).
    """
    with user_errors():
        run_evaluate(**options, command=shlex.join(["leaps-engine", *sys.argv[1:]]))


def run_evaluate(
    *, paths: Sequence[str], evaluator: str | None = None, evaluator_weights: str | None = None,
    device: str = "cpu", batch_size: int = 16, splits: int = 10, output_format: str = "md",
    out: str | None = None, group_by: str | Sequence[str] | None = None, command: str | None = None,
    forward_backend: str = "torch",
) -> list[dict]:
    """Run ``leaps-engine evaluate``: print the table (and write it to ``out``); return the group dicts."""
    from leaps_engine._io import atomic_path
    from leaps_engine.cli.progress import LazyBar
    from leaps_engine.engine.adapters import get_adapter_entry
    from leaps_engine.evaluation import evaluate_results
    from leaps_engine.jobs import check_device
    from leaps_engine.outputs.tables import quality_table

    if output_format not in TABLE_FORMATS:
        raise LeapsError(f"unknown --format {output_format!r}; use one of {', '.join(TABLE_FORMATS)}")
    if forward_backend not in FORWARD_BACKENDS:
        raise LeapsError(f"unknown forward backend {forward_backend!r}; use one of {', '.join(FORWARD_BACKENDS)}")
    if out is not None:
        check_writable_file(Path(out))
    torch_device = check_device(device)
    if evaluator is not None:
        evaluator_weights = evaluator_weights or get_adapter_entry(evaluator).pretrained  # unknown name: fails early
    progress = LazyBar(total=None, desc="evaluating", unit="clip")
    try:
        keys, rows = evaluate_results(paths, evaluator=evaluator, evaluator_weights=evaluator_weights,
                                      device=torch_device, batch_size=batch_size, splits=splits, group_by=group_by,
                                      forward_backend=forward_backend, progress=progress.update,
                                      on_start=progress.set_total)
    finally:
        progress.close()
    command = command or shlex.join(["leaps-engine", "evaluate", *map(str, paths)])
    judged_by = f"{evaluator} ({evaluator_weights} weights)" if evaluator else "none"
    header = f"evaluator {judged_by}, device {torch_device}, forward backend {forward_backend}, command: {command}"
    text = quality_table(rows, keys, output_format, header)
    click.echo(text, nl=False)
    if out is not None:
        with atomic_path(out) as temporary:
            Path(temporary).write_text(text)
    return rows
