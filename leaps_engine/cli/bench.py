"""``leaps-engine bench``: latency of the synthesis step per model, resolution and backend (paper Table 4).

The measurement itself is :func:`leaps_engine.engine.latency.measure_latency`; this command builds the
models, runs the grid with a progress bar, and prints :func:`leaps_engine.outputs.tables.latency_table`.
"""

from __future__ import annotations

import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from leaps_engine.cli.console import user_errors
from leaps_engine.cli.options import EMBEDDED_MODEL, parse_size, parsed_by, table_options, threads_option
from leaps_engine.config import BENCH_BACKENDS, DTYPES, FORWARD_BACKENDS, TABLE4_SIZES

if TYPE_CHECKING:
    import torch

    from leaps_engine.cli.progress import LazyBar


@click.command()
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Model to time; repeat for several (default: the embedded model).")
@click.option("--size", "sizes", multiple=True, metavar="TxHxW", callback=parsed_by(parse_size),
              help="Size of x*; repeat (default: 8x182x182, 8x224x224, 16x224x224, as the paper's Table 4).")
@click.option("--backend", "backends", multiple=True, type=click.Choice(BENCH_BACKENDS),
              help="Step implementation; repeat (default: all five, or none when only --forward-backend is given; "
                   "fused and cuda-graphs need CUDA).")
@click.option("--forward-backend", "forward_backends", multiple=True, type=click.Choice(FORWARD_BACKENDS),
              help="Also time forward-only passes (logits, no gradients) with this backend; repeat (e.g. torch and "
                   "onnxruntime). Rows a backend cannot run here are marked skipped.")
@click.option("--batch", type=int, default=1, show_default=True, help="Videos per step.")
@click.option("--iters", type=int, default=20, show_default=True, help="Timed iterations per row.")
@click.option("--warmup", type=int, default=3, show_default=True,
              help="Untimed iterations first (compilation included).")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
              help="Precision of the lean backends (auto: bfloat16 on CUDA, float32 on CPU).")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda:0.")
@click.option("--weights", default="default", show_default=True,
              help="Weights of the timed models: 'default' (random, or the embedded models' own), 'random', "
                   "a pretrained name or a checkpoint file.")
@click.option("--verifier", "verifier_choice", type=click.Choice(["self", "preset", "none"]), default="self",
              show_default=True,
              help="R_feat network: the model itself when it has BatchNorm3d layers (as the authors' code), else the "
                   "preset's; 'preset' always the preset's; 'none' drops R_feat.")
@table_options
@threads_option
def bench(**options: object) -> None:
    """Time forward, backprop and whole steps of the synthesis loop (the paper's Table 4), per backend.

    Backends: reference (like the authors' code: eager, weight gradients on, hooks, the verifier as a second
    pass, float16 autocast on CUDA), eager (the lean step), compiled (lean + torch.compile), fused (compiled
    + Triton loss kernels), cuda-graphs (fused, captured in CUDA graphs). --forward-backend adds
    forward-only rows (logits without gradients: torch, onnxruntime, tensorrt) in a table of their own.
    `--format json` prints one object per row with model, resolution, batch, backend, dtype, forward_ms,
    backward_ms, step_ms, peak_mem_mb (medians) and forward_only.
    """
    from leaps_engine.jobs import check_device

    with user_errors():
        options["models"] = options["models"] or (EMBEDDED_MODEL,)
        options["sizes"] = list(options["sizes"]) or list(TABLE4_SIZES)
        options["backends"] = options["backends"] or (() if options["forward_backends"] else BENCH_BACKENDS)
        options["device"] = check_device(options["device"])
        run_bench(**options)


def run_bench(
    *, models: tuple[str, ...], sizes: list[tuple[int, int, int]], backends: tuple[str, ...], batch: int,
    iters: int, warmup: int, dtype: str, device: torch.device, weights: str, verifier_choice: str,
    output_format: str, out: str | None, forward_backends: tuple[str, ...] = (),
) -> None:
    """Run ``leaps-engine bench`` with parsed options (see ``leaps-engine bench --help``)."""
    from leaps_engine._io import atomic_path
    from leaps_engine.cli.progress import LazyBar
    from leaps_engine.config import Acceleration
    from leaps_engine.engine.adapters import create_adapter
    from leaps_engine.engine.latency import (
        COMPILED_BACKENDS,
        backend_problem,
        bench_verifier,
        bench_weights,
        measure_forward_latency,
        measure_latency,
    )
    from leaps_engine.errors import LeapsError
    from leaps_engine.export.backends import create_forward_backend, forward_problem
    from leaps_engine.outputs.tables import BenchLine, latency_table

    if batch < 1 or iters < 1 or warmup < 0:
        raise LeapsError(f"--batch and --iters must be >= 1 and --warmup >= 0, got {batch}, {iters}, {warmup}")
    for name in models:  # unknown names and impossible sizes fail before any work
        for size in sizes:
            _check_size(name, size)
    lean_dtype = Acceleration(dtype=dtype).resolve(device.type).dtype
    measured = [b for b in backends if backend_problem(b, device) is None]
    problems = {kind: forward_problem(kind, device, lean_dtype) for kind in forward_backends}
    forward_measured = [kind for kind, problem in problems.items() if problem is None]
    per_size = len(measured) * (warmup + iters) + len(forward_measured) * (max(1, warmup) + iters)
    total = len(models) * len(sizes) * per_size
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
                    rows.append(BenchLine(row, _model_input(model, size), verifier and verifier.name))
                for kind in forward_backends:
                    progress.set_postfix(model=name, size="x".join(map(str, size)), backend=kind)
                    row = measure_forward_latency(forwards.get(kind), model, kind, size, batch, lean_dtype, iters,
                                                  warmup, problems[kind], on_iteration=lambda: progress.update(1))
                    rows.append(BenchLine(row, _model_input(model, size), None))
    finally:
        progress.close()
    text = latency_table(rows, output_format, _header(device, lean_dtype, batch, iters, warmup))
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


def _check_size(name: str, size: tuple[int, int, int]) -> None:
    from leaps_engine.engine.adapters import get_adapter_entry
    from leaps_engine.errors import LeapsError

    spec = get_adapter_entry(name).spec
    frames, height, width = size
    if min(size) < 1:
        raise LeapsError(f"--size must be three positive integers, got {frames}x{height}x{width}")
    if not spec.fixed_size and min(height, width) < spec.min_size:
        raise LeapsError(f"--size {frames}x{height}x{width} is below {name}'s minimum side of {spec.min_size}")


def _model_input(model, size: tuple[int, int, int]) -> str:
    return "x".join(map(str, model.spec.model_size(*size)))


def _header(device: torch.device, dtype: str, batch: int, iters: int, warmup: int) -> list[str]:
    import torch

    from leaps_engine._features import package_version

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    versions = ", ".join(f"{p} {package_version(p)}" for p in ("torch", "triton", "leaps-engine"))
    reference_dtype = "float16" if device.type == "cuda" else "float32"
    return [
        (f"device: {device} ({device_name}); dtype of the lean backends: {dtype} (reference: {reference_dtype}); "
         f"batch {batch}; {iters} timed iterations after {warmup} warm-up"),
        f"versions: {versions}; python {platform.python_version()}",
        "command: " + shlex.join(["leaps-engine", *sys.argv[1:]]),
    ]


def _cpu_name() -> str:
    import torch

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {torch.get_num_threads()} threads"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
