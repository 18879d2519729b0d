"""The tables commands print: latency (``bench``, in the layout of the paper's Table 4), quality
(``evaluate`` and ``sweep report``), each as Markdown, CSV or JSON, and the trials of ``tune``. Each table is
a :class:`Grid` of text cells, which Markdown and the HTML report (:mod:`leaps_engine.outputs.report`) render.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

from leaps_engine.engine.latency import BenchRow
from leaps_engine.engine.tuning import Trial
from leaps_engine.evaluation import ROLES

# ---- latency ----------------------------------------------------------------------------------------------

class BenchLine:
    """A measured row with what the table adds: the model's own input size and the verifier's name."""

    def __init__(self, row: BenchRow, model_input: str, verifier: str | None):
        self.row = row
        self.model_input = model_input
        self.verifier = "none" if verifier is None else ("self" if verifier == row.model else verifier)
        if row.forward_only:
            self.verifier = "-"

    def as_dict(self) -> dict:
        return {**asdict(self.row), "model_input": self.model_input, "verifier": self.verifier}

    @classmethod
    def from_dict(cls, entry: dict) -> BenchLine:
        """The line that :meth:`as_dict` wrote (one row of ``bench --format json``)."""
        line = cls(BenchRow(**{f.name: entry[f.name] for f in fields(BenchRow) if f.name in entry}),
                   entry.get("model_input", "?"), None)
        line.verifier = entry.get("verifier", line.verifier)
        return line


def latency_table(lines: list[BenchLine], output_format: str, header: list[str]) -> str:
    """The rows of ``bench`` as a Markdown table in the layout of the paper's Table 4 (``header`` lines
    first), CSV, or a JSON list (one object per row: :class:`BenchRow`'s fields, model_input, verifier)."""
    if output_format == "json":
        return json.dumps([line.as_dict() for line in lines], indent=2) + "\n"
    if output_format == "csv":
        buffer = io.StringIO()
        names = [f.name for f in fields(BenchRow)] + ["model_input", "verifier"]
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for line in lines:
            writer.writerow(line.as_dict())
        return buffer.getvalue()
    return _markdown(lines, header)


def _markdown(lines: list[BenchLine], header: list[str]) -> str:
    """Table 4 layout: per model and resolution, forward and backprop latency per backend; then the
    forward-only backends, if any, in a table of their own."""
    out = [f"> {text}  " for text in header]
    for grid in latency_grids(lines):
        out += ["", *grid.markdown()]
    return "\n".join(out) + "\n"


@dataclass
class Grid:
    """A table as text cells: what Markdown and the HTML report both render."""

    columns: list[str]
    rows: list[list[str]]
    left: int  # the first ``left`` columns are text (left-aligned); the others numbers (right-aligned)
    note: str = ""  # a sentence below the table: what the columns mean

    def markdown(self) -> list[str]:
        """The table's Markdown lines, then a blank line and the note if there is one."""
        alignment = ["---"] * self.left + ["---:"] * (len(self.columns) - self.left)
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "|".join(alignment) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return [*lines, "", self.note] if self.note else lines


def latency_grids(lines: list[BenchLine]) -> list[Grid]:
    """The step table (backends that optimise x*) and the forward-only table, each if it has rows."""
    steps = [line for line in lines if not line.row.forward_only]
    forwards = [line for line in lines if line.row.forward_only]
    grids = []
    if steps:
        grids.append(_step_grid(steps))
    if forwards:
        grids.append(_forward_grid(forwards))
    return grids


def _baseline(lines: list[BenchLine], backend: str, field: str) -> dict[tuple[str, str], float]:
    """``field`` of the ``backend`` row per (model, resolution): what the speed-up column divides."""
    return {(ln.row.model, ln.row.resolution): getattr(ln.row, field) for ln in lines
            if ln.row.backend == backend and getattr(ln.row, field)}


def _step_grid(lines: list[BenchLine]) -> Grid:
    reference = _baseline(lines, "reference", "step_ms")
    columns = ["model", "x* size (model input)", "verifier", "backend", "dtype", "forward ms", "backprop ms",
               "step ms (p10-p90)", "it/s", "peak MB", "warm-up s", "speed-up"]
    rows = []
    for line in lines:
        row = line.row
        cells = [row.model, f"{row.resolution} ({line.model_input})", line.verifier, row.backend, row.dtype]
        if row.skipped:
            rows.append([*cells, f"skipped: {row.skipped}", *[""] * 6])
            continue
        base = reference.get((row.model, row.resolution))
        rows.append([*cells, f"{row.forward_ms:.1f}", f"{row.backward_ms:.1f}",
                     f"{row.step_ms:.1f} ({row.step_p10_ms:.1f}-{row.step_p90_ms:.1f})", f"{row.iters_per_s:.2f}",
                     "-" if row.peak_mem_mb is None else f"{row.peak_mem_mb:.0f}", f"{row.warmup_s:.1f}",
                     f"{base / row.step_ms:.2f}x" if base else "-"])
    note = ("forward: x* to every loss term; backprop: the input gradient; step: forward + backprop + Adam "
            "update; medians. Peak memory: CUDA peak allocated over two extra iterations (not measured on "
            "the CPU). Speed-up: reference step time / this step time.")
    return Grid(columns, rows, left=5, note=note)


def _forward_grid(lines: list[BenchLine]) -> Grid:
    """Forward-only passes (scoring, stimulus features) per forward backend, against torch's."""
    torch_ms = _baseline(lines, "torch", "forward_ms")
    columns = ["model", "video size (model input)", "forward backend", "dtype", "forward ms (p10-p90)", "clips/s",
               "warm-up s", "speed-up vs torch"]
    rows = []
    for line in lines:
        row = line.row
        cells = [row.model, f"{row.resolution} ({line.model_input})", row.backend, row.dtype]
        if row.skipped:
            rows.append([*cells, f"skipped: {row.skipped}", "", "", ""])
            continue
        base = torch_ms.get((row.model, row.resolution))
        rows.append([*cells, f"{row.forward_ms:.1f} ({row.forward_p10_ms:.1f}-{row.forward_p90_ms:.1f})",
                     f"{row.batch * row.iters_per_s:.1f}", f"{row.warmup_s:.1f}",
                     f"{base / row.forward_ms:.2f}x" if base else "-"])
    note = ("forward-only: logits of the batch without gradients (what scoring and stimulus features run); "
            "warm-up includes the ONNX export or engine build and the check against eager; medians.")
    return Grid(columns, rows, left=4, note=note)


# ---- quality ----------------------------------------------------------------------------------------------

def quality_table(rows: list[dict], keys: Sequence[str], output_format: str, header: str) -> str:
    """The group dicts as a Markdown table (after a ``header`` line), flat CSV, or a JSON list."""
    if output_format == "json":
        return json.dumps(rows, indent=2) + "\n"
    if output_format == "csv":
        flat = [_flatten(row) for row in rows]
        columns = list(dict.fromkeys(key for row in flat for key in row))  # groups may differ in classes
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        return buffer.getvalue()
    return "\n".join([header, "", *quality_grid(rows, keys).markdown()]) + "\n"


def quality_grid(rows: list[dict], keys: Sequence[str]) -> Grid:
    """``evaluate``'s group dicts as a table: the group keys, then accuracies (percent), Inception Scores,
    consecutive-frame PSNR (dB) / SSIM, the pixel-std ratio, the high-frequency ratio and the motion figure
    (a value an older table lacks shows as ``-``)."""
    columns = [*keys, "n", "top-1 m / v / e", "top-5 m / v / e", "IS m / v (mean ± std)",
               "PSNR / SSIM synthesized", "PSNR / SSIM stimulus", "pixel std ratio (min)", "HF ratio",
               "motion sim (classes matched)"]
    cells = []
    for row in rows:
        cells.append([*(str(row.get(key)) for key in keys), str(row["n_videos"]),
                      " / ".join(_cell(row.get(f"top1_{role}"), ".1f") for role in ROLES),
                      " / ".join(_cell(row.get(f"top5_{role}"), ".1f") for role in ROLES),
                      " / ".join(_score_cell(row.get(f"inception_score_{role}")) for role in ("model", "verifier")),
                      f"{_cell(row.get('psnr_synthesized'), '.2f')} / {_cell(row.get('ssim_synthesized'), '.3f')}",
                      f"{_cell(row.get('psnr_stimulus'), '.2f')} / {_cell(row.get('ssim_stimulus'), '.3f')}",
                      _std_cell(row), _cell(row.get("high_frequency_ratio"), ".2f"), _motion_cell(row)])
    return Grid(columns, cells, left=len(keys))


def _std_cell(row: dict) -> str:
    if row.get("pixel_std_ratio") is None:
        return "-"
    return f"{row['pixel_std_ratio']:.2f} ({row['pixel_std_ratio_min']:.2f})"


def _motion_cell(row: dict) -> str:
    if row.get("motion_similarity") is None:
        return "-"
    return f"{row['motion_similarity']:.2f} ({row['motion_classes_matched']}/{row['motion_classes']})"


def _flatten(row: dict) -> dict:
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{inner}": item for inner, item in value.items()})
        elif key.startswith("inception_score_") and value is None:
            flat.update({f"{key}_mean": None, f"{key}_std": None})
        else:
            flat[key] = value
    return flat


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _score_cell(score: dict | None) -> str:
    return "-" if score is None or score["mean"] is None else f"{score['mean']:.2f} ± {score['std']:.2f}"


# ---- tuning -----------------------------------------------------------------------------------------------

def tune_grid(report: dict) -> Grid:
    """The trials of a ``tune.json`` ``report``, best first (the winner marked "(best)")."""
    names = [f.name for f in fields(Trial)]
    trials = sorted((Trial(**{n: t[n] for n in names}) for t in report["trials"]), key=Trial.rank_key, reverse=True)
    best = Trial(**{n: report["best"][n] for n in names})
    columns = ["lambda_first", "lambda_last", "r", "verifier top-1 %", "verifier p(target)", "model top-1 %", "s"]
    rows = [[str(trial.lambda_first), str(trial.lambda_last), f"{trial.r:g}",
             f"{trial.verifier_top1:.1f}" + (" (best)" if trial == best else ""),
             f"{trial.verifier_target_prob:.3f}", f"{trial.model_top1:.1f}", f"{trial.seconds:.1f}"]
            for trial in trials]
    return Grid(columns, rows, left=0)
