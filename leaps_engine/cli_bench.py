"""The ``leaps-engine bench`` job: latency of the synthesis step per model, resolution and backend.

Part of the CLI (with :mod:`leaps_engine.cli`). The measurement itself is
:func:`leaps_engine.engine.latency.measure_latency`; this module builds the models, runs the grid with
a progress bar, and prints a table shaped like the paper's Table 4 (Markdown), CSV or JSON.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from importlib import metadata
from pathlib import Path

import click
import torch

from leaps_engine.cli_progress import LazyBar
from leaps_engine.config import Acceleration
from leaps_engine._io import atomic_path
from leaps_engine.engine.adapters import VideoAdapter, create_adapter, get_adapter_entry
from leaps_engine.engine.latency import (
    COMPILED_BACKENDS,
    BenchRow,
    backend_problem,
    bench_verifier,
    bench_weights,
    measure_forward_latency,
    measure_latency,
)
from leaps_engine.engine.step import resolve_dtype
from leaps_engine.errors import LeapsError
from leaps_engine.export.backends import create_forward_backend, forward_problem


def run_bench(
    *, models: tuple[str, ...], sizes: list[tuple[int, int, int]], backends: tuple[str, ...], batch: int,
    iters: int, warmup: int, dtype: str, device: torch.device, weights: str, verifier_choice: str,
    output_format: str, out: str | None, forward_backends: tuple[str, ...] = (),
) -> None:
    """Run ``leaps-engine bench`` with parsed options (see ``leaps-engine bench --help``)."""
    if batch < 1 or iters < 1 or warmup < 0:
        raise LeapsError(f"--batch and --iters must be >= 1 and --warmup >= 0, got {batch}, {iters}, {warmup}")
    for name in models:  # unknown names and impossible sizes fail before any work
        for size in sizes:
            _check_size(name, size)
    lean_dtype = str(resolve_dtype(Acceleration(dtype=dtype), device)).removeprefix("torch.")
    measured = [b for b in backends if backend_problem(b, device) is None]
    problems = {kind: forward_problem(kind, device, lean_dtype) for kind in forward_backends}
    forward_measured = [kind for kind, problem in problems.items() if problem is None]
    total = len(models) * len(sizes) * (len(measured) * (warmup + iters) + len(forward_measured) * (max(1, warmup) + iters))
    progress = LazyBar(total=total, desc="benchmarking", unit="iter")
    rows = []
    try:
        for name in models:
            model = create_adapter(name, weights=bench_weights(name, weights), device=device)
            verifier = bench_verifier(model, verifier_choice, device)
            forwards = {kind: create_forward_backend(kind, model, dtype=lean_dtype, max_batch=max(2, batch),
                                                     weights=bench_weights(name, weights))
                        for kind in forward_measured}
            for size in sizes:
                for backend in backends:
                    progress.set_postfix(model=name, size="x".join(map(str, size)), backend=backend)
                    row = measure_latency(model, verifier, size, batch, backend, lean_dtype, iters, warmup,
                                          on_iteration=_phases(progress, warmup, backend in COMPILED_BACKENDS))
                    rows.append(_BenchLine(row, _model_input(model, size), verifier))
                for kind in forward_backends:
                    progress.set_postfix(model=name, size="x".join(map(str, size)), backend=kind)
                    row = measure_forward_latency(forwards.get(kind), model, kind, size, batch, lean_dtype, iters,
                                                  warmup, problems[kind], on_iteration=lambda: progress.update(1))
                    rows.append(_BenchLine(row, _model_input(model, size), None))
    finally:
        progress.close()
    text = _render(rows, output_format, _header(device, lean_dtype, batch, iters, warmup))
    if out:
        with atomic_path(Path(out)) as tmp:
            Path(tmp).write_text(text)
        click.echo(f"wrote {out}", err=True)
    click.echo(text, nl=False)


def _phases(progress: LazyBar, warmup: int, compiles: bool) -> Callable[[], None]:
    """An ``on_iteration`` that counts iterations and says in the bar which phase runs: warm-up (with a
    compilation first, which can take minutes), then timing."""
    done = 0
    progress.describe("benchmarking: warm-up" + (", compiling first (can take minutes)" if compiles else "")
                      if warmup else "benchmarking")

    def on_iteration() -> None:
        nonlocal done
        done += 1
        progress.update(1)
        if done == warmup:
            progress.describe("benchmarking")

    return on_iteration


class _BenchLine:
    """A measured row with what the table adds: the model's own input size and the verifier's name."""

    def __init__(self, row: BenchRow, model_input: str, verifier: VideoAdapter | None):
        self.row = row
        self.model_input = model_input
        self.verifier = "none" if verifier is None else ("self" if verifier.name == row.model else verifier.name)
        if row.forward_only:
            self.verifier = "-"

    def as_dict(self) -> dict:
        return {**asdict(self.row), "model_input": self.model_input, "verifier": self.verifier}


def _check_size(name: str, size: tuple[int, int, int]) -> None:
    spec = get_adapter_entry(name).spec
    frames, height, width = size
    if min(size) < 1:
        raise LeapsError(f"--size must be three positive integers, got {frames}x{height}x{width}")
    if not spec.fixed_size and min(height, width) < spec.min_size:
        raise LeapsError(f"--size {frames}x{height}x{width} is below {name}'s minimum side of {spec.min_size}")


def _model_input(model: VideoAdapter, size: tuple[int, int, int]) -> str:
    return "x".join(map(str, model.spec.model_size(*size)))


def _header(device: torch.device, dtype: str, batch: int, iters: int, warmup: int) -> list[str]:
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    versions = ", ".join(f"{p} {_version(p)}" for p in ("torch", "triton", "leaps-engine"))
    reference_dtype = "float16" if device.type == "cuda" else "float32"
    return [
        (f"device: {device} ({device_name}); dtype of the lean backends: {dtype} (reference: {reference_dtype}); "
         f"batch {batch}; {iters} timed iterations after {warmup} warm-up"),
        f"versions: {versions}; python {platform.python_version()}",
        "command: " + shlex.join(["leaps-engine", *sys.argv[1:]]),
    ]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {torch.get_num_threads()} threads"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _render(lines: list[_BenchLine], output_format: str, header: list[str]) -> str:
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


def _markdown(lines: list[_BenchLine], header: list[str]) -> str:
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


def _baseline(lines: list[_BenchLine], backend: str, field: str) -> dict[tuple[str, str], float]:
    """``field`` of the ``backend`` row per (model, resolution): what the speed-up column divides."""
    return {(ln.row.model, ln.row.resolution): getattr(ln.row, field) for ln in lines
            if ln.row.backend == backend and getattr(ln.row, field)}


def _step_table(lines: list[_BenchLine]) -> list[str]:
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


def _forward_table(lines: list[_BenchLine]) -> list[str]:
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
