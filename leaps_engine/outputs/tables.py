"""The tables commands print: latency (``bench``, in the layout of the paper's Table 4) and quality
(``evaluate`` and ``sweep report``), each as Markdown, CSV or JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, fields

from leaps_engine.engine.latency import BenchRow
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
    steps = [line for line in lines if not line.row.forward_only]
    forwards = [line for line in lines if line.row.forward_only]
    if steps:
        out += _step_table(steps)
    if forwards:
        out += _forward_table(forwards)
    return "\n".join(out) + "\n"


def _baseline(lines: list[BenchLine], backend: str, field: str) -> dict[tuple[str, str], float]:
    """``field`` of the ``backend`` row per (model, resolution): what the speed-up column divides."""
    return {(ln.row.model, ln.row.resolution): getattr(ln.row, field) for ln in lines
            if ln.row.backend == backend and getattr(ln.row, field)}


def _step_table(lines: list[BenchLine]) -> list[str]:
    reference = _baseline(lines, "reference", "step_ms")
    out = ["", ("| model | x* size (model input) | verifier | backend | dtype | forward ms | backprop ms | "
                 "step ms (p10-p90) | it/s | peak MB | warm-up s | speed-up |"),
            "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for line in lines:
        row = line.row
        size = f"{row.resolution} ({line.model_input})"
        if row.skipped:
            out.append(f"| {row.model} | {size} | {line.verifier} | {row.backend} | {row.dtype} | "
                       f"skipped: {row.skipped} | | | | | | |")
            continue
        base = reference.get((row.model, row.resolution))
        speedup = f"{base / row.step_ms:.2f}x" if base else "-"
        memory = "-" if row.peak_mem_mb is None else f"{row.peak_mem_mb:.0f}"
        out.append(f"| {row.model} | {size} | {line.verifier} | {row.backend} | {row.dtype} | {row.forward_ms:.1f} | "
                   f"{row.backward_ms:.1f} | {row.step_ms:.1f} ({row.step_p10_ms:.1f}-{row.step_p90_ms:.1f}) | "
                   f"{row.iters_per_s:.2f} | {memory} | {row.warmup_s:.1f} | {speedup} |")
    out.append("")
    out.append("forward: x* to every loss term; backprop: the input gradient; step: forward + backprop + Adam "
               "update; medians. Peak memory: CUDA peak allocated over two extra iterations (not measured on "
               "the CPU). Speed-up: reference step time / this step time.")
    return out


def _forward_table(lines: list[BenchLine]) -> list[str]:
    """Forward-only passes (scoring, stimulus features) per forward backend, against torch's."""
    torch_ms = _baseline(lines, "torch", "forward_ms")
    out = ["", ("| model | video size (model input) | forward backend | dtype | forward ms (p10-p90) | clips/s | "
                "warm-up s | speed-up vs torch |"),
           "|---|---|---|---|---:|---:|---:|---:|"]
    for line in lines:
        row = line.row
        size = f"{row.resolution} ({line.model_input})"
        if row.skipped:
            out.append(f"| {row.model} | {size} | {row.backend} | {row.dtype} | skipped: {row.skipped} | | | |")
            continue
        base = torch_ms.get((row.model, row.resolution))
        speedup = f"{base / row.forward_ms:.2f}x" if base else "-"
        out.append(f"| {row.model} | {size} | {row.backend} | {row.dtype} | {row.forward_ms:.1f} "
                   f"({row.forward_p10_ms:.1f}-{row.forward_p90_ms:.1f}) | {row.batch * row.iters_per_s:.1f} | "
                   f"{row.warmup_s:.1f} | {speedup} |")
    out.append("")
    out.append("forward-only: logits of the batch without gradients (what scoring and stimulus features run); "
               "warm-up includes the ONNX export or engine build and the check against eager; medians.")
    return out


# ---- quality ----------------------------------------------------------------------------------------------

def quality_table(rows: list[dict], keys: Sequence[str], output_format: str, header: str) -> str:
    """The group dicts as a Markdown table (after a ``header`` line), flat CSV, or a JSON list."""
    if output_format == "json":
        return json.dumps(rows, indent=2) + "\n"
    if output_format == "csv":
        flat = [_flatten(row) for row in rows]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]) if flat else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        return buffer.getvalue()
    columns = [*keys, "n", "top-1 m / v / e", "top-5 m / v / e", "IS m / v (mean ± std)",
               "PSNR / SSIM synthesized", "PSNR / SSIM stimulus", "HF ratio"]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [*(str(row[key]) for key in keys), str(row["n_videos"]),
                 " / ".join(_cell(row[f"top1_{role}"], ".1f") for role in ROLES),
                 " / ".join(_cell(row[f"top5_{role}"], ".1f") for role in ROLES),
                 " / ".join(_score_cell(row[f"inception_score_{role}"]) for role in ("model", "verifier")),
                 f"{_cell(row['psnr_synthesized'], '.2f')} / {_cell(row['ssim_synthesized'], '.3f')}",
                 f"{_cell(row['psnr_stimulus'], '.2f')} / {_cell(row['ssim_stimulus'], '.3f')}",
                 _cell(row["high_frequency_ratio"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
