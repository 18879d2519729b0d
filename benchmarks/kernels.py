"""Micro-benchmark of the fused losses against their pure-torch reference, eager and compiled.

Losses: the JVS priming loss over one tap, ``tap_priming_loss_triton(tap, target, w)`` against
``w * tap_priming_loss_ref(tap, target, "jvs")`` (the tap is the ``[B, C, T, H*W]`` view of the
activation), and the per-video BN-statistics loss, ``bn_statistics_loss_triton(a, m, v)`` against
``bn_statistics_loss_ref(a, m, v, True)``. Implementations: ``eager`` (the reference), ``compile``
(``torch.compile(reference, dynamic=False)``) and ``triton`` (skipped on the CPU, where only Triton's
far too slow interpreter runs them, unless ``--include-interpreter``). Times: forward, and forward +
``loss.backward(grad_output)`` with a random positive ``grad_output``.

Every implementation's loss and input gradient are checked against eager first; a mismatch exits with
an error. Checking, compilation and warm-up are timed together (``warmup_s``), never in the figures.
On CUDA the figures are device time: ``GRAPH_CALLS`` calls, each on its own copy of the activation (so
no call reads another's data from L2), are captured in one CUDA graph, and each replay's time (CUDA
events) is divided by ``GRAPH_CALLS``; without that, the host's launch overhead (a few hundred
microseconds per loss) would hide the kernels. Where capture fails, the row says so in ``timer`` and is
timed call by call with events.
GB/s counts the bytes that must move: the activation read once (forward), plus the gradient write
(forward+backward), plus for BN one more activation read (its gradient depends on the activation).

    python benchmarks/kernels.py [--device cuda] [--dtype bfloat16] [--format md|csv|json] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm import tqdm

IMPLEMENTATIONS = ("eager", "compile", "triton")
LOSSES = ("priming", "bn_stats")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Activation shapes C x T x H x W (":cl": channels_last_3d), as in the stages of a 3D ResNet-50.
CUDA_SHAPES = ("64x8x56x56", "256x8x28x28", "256x8x28x28:cl", "512x4x14x14", "2048x4x7x7")
CPU_SHAPES = ("16x4x14x14", "32x4x7x7", "32x4x7x7:cl")
DEFAULTS = {"cuda": {"shape": CUDA_SHAPES, "batch": [1, 8], "iters": 50, "warmup": 10},
            "cpu": {"shape": CPU_SHAPES, "batch": [1, 2], "iters": 10, "warmup": 2}}
PRIMING_WEIGHT = 0.7
GRAPH_CALLS = 10  # calls per captured CUDA graph, each on its own copy of the input
CPU_TRITON_SKIP = "Triton interpreter too slow to time on the CPU; pass --include-interpreter"


class MismatchError(RuntimeError):
    """An implementation's loss or gradient differs from the eager reference."""


@dataclass(frozen=True)
class LossSpec:
    """One loss: its reference ``(x, *constants) -> [B]``, the fused version, and how to build inputs."""

    name: str
    reference: Callable[..., torch.Tensor]
    fused: Callable[..., torch.Tensor]
    constants: Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, ...]]
    to_input: Callable[[torch.Tensor], torch.Tensor]  # activation [B, C, T, H, W] -> the loss's input
    backward_reads: int  # activation reads in backward: BN 1, priming 0 (its gradient is constant per row)


@dataclass
class Row:
    """One (loss, shape, layout, implementation); times in ms over ``iters`` timed iterations."""

    loss: str
    shape: str  # activation B x C x T x H x W
    layout: str
    impl: str
    dtype: str
    fwd_ms: float | None = None  # median
    fwd_p10_ms: float | None = None
    fwd_p90_ms: float | None = None
    fwd_bwd_ms: float | None = None
    fwd_bwd_p10_ms: float | None = None
    fwd_bwd_p90_ms: float | None = None
    fwd_gbps: float | None = None
    fwd_bwd_gbps: float | None = None
    fwd_speedup: float | None = None  # eager median / this median
    fwd_bwd_speedup: float | None = None
    warmup_s: float | None = None  # check against eager, compilation and warm-up
    iters: int = 0
    timer: str | None = None  # "cuda-graph", "events" (call by call) or "perf_counter" (CPU)
    skipped: str | None = None


def loss_specs(names: list[str]) -> list[LossSpec]:
    """The requested losses; the kernels are imported here, after ``TRITON_INTERPRET`` is settled."""
    from leaps_engine.kernels import bn_stats, priming

    def priming_reference(tap: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return PRIMING_WEIGHT * priming.tap_priming_loss_ref(tap, target, "jvs")

    def priming_fused(tap: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return priming.tap_priming_loss_triton(tap, target, PRIMING_WEIGHT)

    def bn_reference(activation: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return bn_stats.bn_statistics_loss_ref(activation, mean, var, True)

    def target(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor]:  # [B, C]
        return (torch.randn(x.shape[:2], device=x.device, generator=generator),)

    def running_statistics(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        mean, var = (torch.rand(x.shape[1], device=x.device, generator=generator) for _ in range(2))  # [C]
        return 2 * mean - 1, var + 0.5

    specs = {
        "priming": LossSpec("priming", priming_reference, priming_fused, target, lambda x: x.flatten(3), 0),
        "bn_stats": LossSpec("bn_stats", bn_reference, bn_stats.bn_statistics_loss_triton, running_statistics,
                             lambda x: x, 1),
    }
    return [specs[name] for name in names]


def implementation(impl: str, spec: LossSpec, device: torch.device, interpreter: bool):
    """``(function, None)``, or ``(None, why it is skipped)``."""
    if impl == "eager":
        return spec.reference, None
    if impl == "compile":
        torch.compiler.reset()  # a fresh graph per case: past the recompile limit dynamo would run eager
        return torch.compile(spec.reference, dynamic=False), None
    from leaps_engine.kernels.registry import triton_problem

    if device.type == "cpu" and not interpreter:
        return None, CPU_TRITON_SKIP
    problem = triton_problem(device)
    return (None, problem) if problem else (spec.fused, None)


def activation(batch: int, shape: tuple[int, ...], channels_last: bool, dtype: torch.dtype, device: torch.device,
               generator: torch.Generator) -> torch.Tensor:
    """Random activation ``[B, C, T, H, W]`` with per-channel offsets, contiguous or channels_last_3d."""
    x = torch.randn((batch, *shape), device=device, generator=generator)
    x = (x + torch.randn((1, shape[0], 1, 1, 1), device=device, generator=generator)).to(dtype)
    return x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x


def loss_and_grad(fn: Callable, x: torch.Tensor, constants: tuple, grad_output: torch.Tensor):
    """``(loss [B], d (loss . grad_output) / d x)``, through ``loss.backward``."""
    leaf = x.detach().requires_grad_()
    loss = fn(leaf, *constants)
    loss.backward(grad_output)
    return loss.detach(), leaf.grad


def check_close(label: str, actual: tuple, expected: tuple, dtype: torch.dtype) -> None:
    """Raise :class:`MismatchError` unless loss and gradient match eager within the tolerances of
    ``--kernels auto``'s first-use check (``FIRST_USE_TOLERANCES``)."""
    from leaps_engine.kernels.registry import FIRST_USE_TOLERANCES

    rtol, atol = FIRST_USE_TOLERANCES[dtype]
    subnormal_step = torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps  # tiny float16 gradients
    for what, got, want in zip(("loss", "gradient"), actual, expected, strict=True):
        got, want = got.float(), want.float()
        scale = want.abs().max().item()
        if got.shape != want.shape or not torch.allclose(got, want, rtol=rtol, atol=atol * scale + 2 * subnormal_step):
            error = (got - want).abs().max().item() if got.shape == want.shape else float("nan")
            raise MismatchError(f"{label}: {what} differs from eager (max abs error {error:.3g}, scale {scale:.3g})")


def time_ms(fn: Callable[[], object], iters: int, device: torch.device) -> list[float]:
    """Milliseconds of each of ``iters`` calls, synchronised around each (CUDA events on CUDA)."""
    times = []
    for _ in range(iters):
        if device.type != "cuda":
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1e3)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def graph_time_ms(call: Callable[[torch.Tensor], object], leaves: list[torch.Tensor], iters: int,
                  device: torch.device) -> list[float]:
    """Per-call milliseconds of ``call(leaf)``, from ``iters`` replays of a CUDA graph that calls it once on
    each of ``leaves``; raises whatever capture raises."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # capture needs its warm-up on a side stream
        for leaf in leaves:
            call(leaf)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for leaf in leaves:
            call(leaf)
    graph.replay()
    return [t / len(leaves) for t in time_ms(graph.replay, iters, device)]


def quantiles(times: list[float]) -> list[float]:
    """``[p10, median, p90]`` in ms."""
    values = torch.tensor(times, dtype=torch.float64).quantile(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    return [round(v, 4) for v in values.tolist()]


def significant(value: float) -> float:
    """``value`` to 4 significant digits (tiny shapes move so few bytes that fixed decimals would give 0)."""
    return float(f"{value:.4g}")


def measure(row: Row, fn: Callable, x: torch.Tensor, constants: tuple, grad_output: torch.Tensor,
            expected: tuple, args: argparse.Namespace, device: torch.device) -> None:
    """Check ``fn`` against eager, warm it up, then fill ``row``'s timings."""
    started = time.perf_counter()
    actual = loss_and_grad(fn, x, constants, grad_output)
    check_close(f"{row.impl} {row.loss} {row.shape} {row.layout} {row.dtype}", actual, expected, x.dtype)
    leaf = x.detach().requires_grad_()

    def forward() -> None:
        fn(leaf, *constants)

    def forward_backward() -> None:
        leaf.grad = None  # no accumulation: the gradient is written once
        fn(leaf, *constants).backward(grad_output)

    for _ in range(args.warmup):
        forward()
        forward_backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    row.warmup_s = round(time.perf_counter() - started, 3)
    row.iters = args.iters
    forward_times = backward_times = None
    if device.type == "cuda":
        leaves = [x.detach().clone().requires_grad_() for _ in range(GRAPH_CALLS)]

        def call_forward(leaf: torch.Tensor) -> None:
            fn(leaf, *constants)

        def call_forward_backward(leaf: torch.Tensor) -> None:
            leaf.grad = None
            fn(leaf, *constants).backward(grad_output)

        try:
            forward_times = graph_time_ms(call_forward, leaves, args.iters, device)
            backward_times = graph_time_ms(call_forward_backward, leaves, args.iters, device)
            row.timer = "cuda-graph"
        except Exception as error:  # some implementations cannot be captured: time them call by call
            torch.cuda.synchronize(device)
            forward_times = backward_times = None
            row.timer = f"events (capture failed: {type(error).__name__})"
    if forward_times is None:
        row.timer = row.timer or ("events" if device.type == "cuda" else "perf_counter")
        forward_times = time_ms(forward, args.iters, device)
        backward_times = time_ms(forward_backward, args.iters, device)
    row.fwd_p10_ms, row.fwd_ms, row.fwd_p90_ms = quantiles(forward_times)
    row.fwd_bwd_p10_ms, row.fwd_bwd_ms, row.fwd_bwd_p90_ms = quantiles(backward_times)


def bench_case(spec: LossSpec, x: torch.Tensor, layout: str, args: argparse.Namespace, device: torch.device,
               bar: tqdm) -> list[Row]:
    """Rows of every implementation (eager first) for one loss on one activation ``x`` ``[B, C, T, H, W]``."""
    generator = torch.Generator(device).manual_seed(1)
    constants = spec.constants(x, generator)
    loss_input = spec.to_input(x)
    grad_output = torch.rand(x.shape[0], device=device, generator=generator) + 0.5  # [B]
    expected = loss_and_grad(spec.reference, loss_input, constants, grad_output)
    activation_bytes = x.numel() * x.element_size()
    moved = (activation_bytes, activation_bytes * (2 + spec.backward_reads))  # forward, forward+backward
    rows: list[Row] = []
    for impl in args.impl:
        row = Row(spec.name, "x".join(map(str, x.shape)), layout, impl, str(x.dtype).removeprefix("torch."))
        fn, row.skipped = implementation(impl, spec, device, args.include_interpreter)
        if fn is not None:
            measure(row, fn, loss_input, constants, grad_output, expected, args, device)
        if row.fwd_ms is not None:
            eager = rows[0] if rows else row
            row.fwd_gbps = significant(moved[0] / row.fwd_ms / 1e6)  # bytes per ms / 1e6 = GB/s
            row.fwd_bwd_gbps = significant(moved[1] / row.fwd_bwd_ms / 1e6)
            row.fwd_speedup = significant(eager.fwd_ms / row.fwd_ms)
            row.fwd_bwd_speedup = significant(eager.fwd_bwd_ms / row.fwd_bwd_ms)
        rows.append(row)
        bar.update()
    return rows


def run(args: argparse.Namespace, device: torch.device) -> list[Row]:
    """Every (loss, batch, shape, implementation) row, with a progress bar on stderr."""
    specs = loss_specs(args.loss)
    cases = [(batch, shape, cl) for batch in args.batch for shape, cl in args.shape]
    rows = []
    with tqdm(total=len(specs) * len(cases) * len(args.impl), desc="kernels", unit="row", file=sys.stderr) as bar:
        for batch, shape, channels_last in cases:
            generator = torch.Generator(device).manual_seed(0)
            x = activation(batch, shape, channels_last, DTYPES[args.dtype], device, generator)
            layout = "channels_last_3d" if channels_last else "contiguous"
            for spec in specs:
                rows.extend(bench_case(spec, x, layout, args, device, bar))
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    return platform.processor() or platform.machine()


def header(args: argparse.Namespace, device: torch.device, command: str) -> dict[str, str]:
    triton_version = "not installed"
    with contextlib.suppress(ImportError):
        import triton

        triton_version = triton.__version__
    timer = (f"CUDA events over CUDA-graph replays of {GRAPH_CALLS} calls on separate inputs, per call"
             if device.type == "cuda" else "perf_counter")
    meta = {"device": device_name(device), "torch": torch.__version__, "triton": triton_version,
            "dtype": args.dtype, "command": command,
            "timing": f"median, p10, p90 of {args.iters} iterations after {args.warmup} warm-up ({timer})",
            "columns": "GB/s and speed-up (vs eager) are forward / forward+backward"}
    if device.type == "cpu" and "triton" in args.impl:
        meta["triton_note"] = ("triton rows ran through the Triton interpreter: their times mean nothing"
                               if args.include_interpreter else "triton rows skipped: " + CPU_TRITON_SKIP)
    return meta


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(meta: dict[str, str], rows: list[Row]) -> str:
    lines = [f"- {key}: {value}" for key, value in meta.items()]
    lines += ["", "| loss | shape | layout | impl | fwd ms | fwd+bwd ms (p10-p90) | GB/s | speed-up |",
              "|---|---|---|---|---:|---:|---:|---:|"]
    for row in rows:
        start = f"| {row.loss} | {row.shape} | {row.layout} | {row.impl} |"
        if row.fwd_ms is None:
            lines.append(f"{start} skipped: {row.skipped} | - | - | - |")
            continue
        spread = f"{_cell(row.fwd_bwd_ms)} ({_cell(row.fwd_bwd_p10_ms)}-{_cell(row.fwd_bwd_p90_ms)})"
        gbps = f"{_cell(row.fwd_gbps, 1)} / {_cell(row.fwd_bwd_gbps, 1)}"
        speedup = f"{_cell(row.fwd_speedup, 2)}x / {_cell(row.fwd_bwd_speedup, 2)}x"
        lines.append(f"{start} {_cell(row.fwd_ms)} | {spread} | {gbps} | {speedup} |")
    return "\n".join(lines) + "\n"


def render(fmt: str, meta: dict[str, str], rows: list[Row]) -> str:
    if fmt == "json":
        return json.dumps({"meta": meta, "rows": [dataclasses.asdict(r) for r in rows]}, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=[f.name for f in dataclasses.fields(Row)])
        writer.writeheader()
        writer.writerows(dataclasses.asdict(r) for r in rows)
        return buffer.getvalue()
    return markdown(meta, rows)


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it owner-only
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def parse_shape(text: str) -> tuple[tuple[int, ...], bool]:
    """``"CxTxHxW"`` or ``"CxTxHxW:cl"`` (channels_last_3d) -> ``((C, T, H, W), channels_last)``."""
    dims, _, suffix = text.partition(":")
    shape = tuple(int(d) for d in dims.split("x") if d.isdigit())
    if len(shape) != 4 or len(dims.split("x")) != 4 or min(shape) < 1 or suffix not in ("", "cl"):
        raise argparse.ArgumentTypeError(f"expected CxTxHxW or CxTxHxW:cl, e.g. 64x8x56x56, got {text!r}")
    return shape, suffix == "cl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="activation dtype")
    parser.add_argument("--format", choices=("md", "csv", "json"), default="md")
    parser.add_argument("--out", help="also write the output to this file")
    parser.add_argument("--iters", type=int, help="timed iterations (CUDA 50, CPU 10)")
    parser.add_argument("--warmup", type=int, help="untimed iterations first (CUDA 10, CPU 2)")
    parser.add_argument("--shape", type=parse_shape, action="append", help="activation CxTxHxW[:cl], repeatable")
    parser.add_argument("--batch", type=int, action="append", help="batch size, repeatable (CUDA 1 8, CPU 1 2)")
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, action="append", help="repeatable (default: all)")
    parser.add_argument("--loss", choices=LOSSES, action="append", help="repeatable (default: both)")
    parser.add_argument("--include-interpreter", action="store_true",
                        help="on the CPU, also run the Triton kernels through the (very slow) interpreter")
    args = parser.parse_args(argv)
    device_type = torch.device(args.device).type
    if device_type not in DEFAULTS:
        parser.error(f"--device must be cuda or cpu, got {args.device}")
    if device_type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    for name, default in DEFAULTS[device_type].items():
        if getattr(args, name) is None:
            setattr(args, name, [parse_shape(s) for s in default] if name == "shape" else default)
    args.impl = ["eager", *[i for i in dict.fromkeys(args.impl or IMPLEMENTATIONS) if i != "eager"]]
    args.loss = list(dict.fromkeys(args.loss or LOSSES))
    if args.iters < 1 or args.warmup < 0 or min(args.batch) < 1:
        parser.error("--iters and --batch must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> list[Row]:
    """Run the benchmark; print the output (Markdown table last); return the rows."""
    command = shlex.join(sys.orig_argv if argv is None else [sys.executable, __file__, *argv])
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu" and args.include_interpreter:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # read when leaps_engine.kernels is first imported
    try:
        rows = run(args, device)
    except MismatchError as error:
        raise SystemExit(f"error: refusing to time a wrong implementation: {error}") from None
    text = render(args.format, header(args, device, command), rows)
    if args.out:
        write_atomic(args.out, text)
    sys.stdout.write(text)
    return rows


if __name__ == "__main__":
    main()
