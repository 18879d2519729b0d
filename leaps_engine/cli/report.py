"""``leaps-engine report``: one self-contained HTML page of results (:mod:`leaps_engine.outputs.report`).

:func:`write_report` is also what ``synthesize --report`` and ``sweep run --report`` call at the end of a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from leaps_engine.cli.console import check_writable_file, user_errors
from leaps_engine.cli.options import device_option, threads_option


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(), metavar="PATH...")
@click.option("--out", default="report.html", show_default=True, type=click.Path(), help="The HTML file to write.")
@click.option("--title", default="leaps-engine report", show_default=True, help="The page's title.")
@click.option("--evaluator", default=None, metavar="NAME",
              help="Also score the runs with this network in the comparison table (as `evaluate --evaluator`).")
@click.option("--evaluator-weights", default=None, help="Evaluator weights (default: its pretrained weights).")
@device_option()
@threads_option
def report(**options: object) -> None:
    """Write one HTML page that shows results: videos, loss curves, top-5, and comparison tables.

    Each PATH is a result folder of `leaps-engine synthesize`, a folder searched recursively (a sweep
    output, a tune folder), a result.json, a manifest (.txt, one path a line; .json, a list of paths), or a
    JSON table of `bench --format json` or `evaluate --format json`, or a tune.json. The page embeds its
    videos and plots, so it opens from disk with no network and can be moved alone. With two or more runs
    it compares them: a grid of videos (class x setting) beside the `evaluate` table of the runs, grouped
    by the settings that differ.
    """
    with user_errors():
        out = write_report(**options)
        click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


def write_report(
    *, paths: Sequence[str | Path], out: str | Path, title: str = "leaps-engine report",
    evaluator: str | None = None, evaluator_weights: str | None = None, device: str = "cpu",
) -> Path:
    """Collect ``paths``, score several runs against each other, and write the page to ``out`` (whole or
    not at all). Returns the path written. A run set that cannot be scored (e.g. its weights are not on
    this machine) still gets its page, with the reason in place of the table and a warning on stderr.

    Raises:
        LeapsError: ``out`` is a folder or in none; an unknown evaluator; bad or empty ``paths``.
    """
    from leaps_engine._io import atomic_path
    from leaps_engine.cli.progress import LazyBar
    from leaps_engine.engine.adapters import get_adapter_entry
    from leaps_engine.errors import LeapsError
    from leaps_engine.evaluation import evaluate_results
    from leaps_engine.jobs import check_device
    from leaps_engine.outputs.report import collect_inputs, render_report, setting_keys
    from leaps_engine.outputs.video import mp4_codec

    out = Path(out)
    check_writable_file(out)
    torch_device = check_device(device)
    if evaluator is not None:
        get_adapter_entry(evaluator)  # an unknown name fails here, whatever is being reported
    elif evaluator_weights is not None:
        raise LeapsError("--evaluator-weights needs --evaluator")
    inputs = collect_inputs(paths)
    if inputs.runs and mp4_codec() != "libx264":
        click.echo(f"warning: this PyAV build has no H.264 encoder ({mp4_codec()} instead): browsers may not play "
                   "the stimulus videos", err=True)
    rows, note = None, ""
    if len(inputs.runs) > 1:
        scoring = LazyBar(total=None, desc="scoring", unit="clip")
        try:
            _, rows = evaluate_results([run.path for run in inputs.runs], evaluator=evaluator,
                                       evaluator_weights=evaluator_weights, device=torch_device,
                                       group_by=setting_keys(inputs.runs), progress=scoring.update,
                                       on_start=scoring.set_total)
        except LeapsError as error:
            note = f"Not scored: {error}"
            click.echo(f"warning: the comparison has no evaluate table: {error}", err=True)
        finally:
            scoring.close()
    clips = sum(len(run.summary["clips"]) for run in inputs.runs)
    placing = LazyBar(total=clips, desc="report", unit="clip")
    try:
        page = render_report(inputs, comparison=rows, comparison_note=note, title=title, progress=placing.update)
    finally:
        placing.close()
    with atomic_path(out) as temporary:
        Path(temporary).write_text(page, encoding="utf-8")
    return out


def report_after_run(paths: Sequence[str | Path], out: Path, device: str) -> None:
    """Write the report at the end of ``synthesize --report`` or ``sweep run --report``: a problem becomes a
    warning, since the run itself is done and kept."""
    from leaps_engine.errors import LeapsError

    try:
        click.echo(f"wrote {write_report(paths=paths, out=out, device=device)}")
    except LeapsError as error:
        click.echo(f"warning: no report written: {error}", err=True)
