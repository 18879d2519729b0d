"""The GPU work in one call, within a time budget: the environment, the device's copy bandwidth,
``pytest -m gpu``, the fused-loss kernel benchmark and the paper's Table 4 latency grid.

Everything lands in ``RESULTS/gpu_suite_<device>.json`` (every figure, with device name, driver, torch
and Triton versions) and ``RESULTS/gpu_suite_<device>.md`` (the goals, the tests, the tables); the
logs of the tests, the kernel benchmark and the grid workers go to
``RESULTS/gpu_{tests,kernels,grid}_<device>.log``. A short summary is printed last.

The grid runs in priority order (slow_r50 at 8x224^2 with the reference, lean eager and fused backends
first, then batch 8, the eager Table 4 sizes, x3d_m and swin3d_b at their native sizes, then the other
compiled backends) in a worker process that writes each row to a log as it finishes. A row that kills
its process (a CUDA fault poisons the context) is recorded as failed and a fresh worker takes the rest;
rows left when the budget is spent are listed as not reached. Sections that overrun their share are
stopped, and say so.

    python benchmarks/gpu_suite.py [--dry-run] [--results DIR] [--budget SECONDS]

``--dry-run`` runs every section on the CPU with the embedded networks at tiny sizes (the script is
tested this way in CI). ``benchmarks/gpu_suite.sh`` installs the carried wheels and the project, then
runs this.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import torch

from leaps_engine._features import package_version

REPO = Path(__file__).resolve().parents[1]
KERNELS_SCRIPT = REPO / "benchmarks" / "kernels.py"
WORKER_RESTARTS = 4  # fresh workers after rows that killed theirs
REPORT_RESERVE_S = 5.0  # kept back from the grid for the report


@dataclass(frozen=True)
class Scale:
    """What the suite runs on one kind of machine."""

    device: str
    dtype: str  # the lean backends' autocast dtype
    flexible_models: tuple[str, str]  # timed at every Table 4 size; the first one is the goals' model
    native_models: tuple[tuple[str, tuple[int, int, int]], ...]  # timed once at their native size
    sizes: tuple[tuple[int, int, int], ...]  # Table 4's x* sizes (T, H, W)
    main_size: tuple[int, int, int]  # where every backend runs, at both batches
    batches: tuple[int, int]
    iters: int
    warmup: int
    copy_bytes: int
    tests_share_s: float  # the most the tests and the kernel benchmark may take
    kernels_share_s: float


GPU_SCALE = Scale(
    device="cuda", dtype="bfloat16", flexible_models=("slow_r50", "r2plus1d_r50"),
    native_models=(("x3d_m", (16, 224, 224)), ("swin3d_b", (32, 224, 224))),
    sizes=((8, 182, 182), (8, 224, 224), (16, 224, 224)), main_size=(8, 224, 224), batches=(1, 8),
    iters=20, warmup=3, copy_bytes=2 * 2**30, tests_share_s=150.0, kernels_share_s=40.0)
DRY_RUN_SCALE = Scale(
    device="cpu", dtype="float32", flexible_models=("embedded", "embedded_verifier"),
    native_models=(("embedded_evaluator", (8, 32, 32)),),
    sizes=((4, 16, 16), (8, 32, 32), (8, 48, 48)), main_size=(8, 32, 32), batches=(1, 2),
    iters=2, warmup=1, copy_bytes=2**24, tests_share_s=240.0, kernels_share_s=120.0)
BACKENDS = ("reference", "eager", "compiled", "fused", "cuda-graphs")
# Goals of the GPU run (issue: GPU-ready), checked on the goals' model at the main size.
STEP_GOAL_MS = 30.0
REFERENCE_SPEEDUP_GOAL = 5.0
BANDWIDTH_GOAL = 0.6
BATCH_THROUGHPUT_GOAL = 4.0


@dataclass(frozen=True)
class GridRow:
    """One (model, x* size, batch, backend) of the latency grid."""

    model: str
    size: tuple[int, int, int]
    batch: int
    backend: str

    @property
    def key(self) -> str:
        return f"{self.model}/{'x'.join(map(str, self.size))}/b{self.batch}/{self.backend}"


def grid_plan(scale: Scale) -> list[GridRow]:
    """The grid's rows in the order they run: what the goals need first, the compiled variants last."""
    first, second = scale.flexible_models
    small, large = scale.batches
    main = scale.main_size
    rows = [GridRow(first, main, small, backend) for backend in ("reference", "eager", "fused")]
    rows += [GridRow(first, main, large, backend) for backend in ("eager", "fused")]
    rows += [GridRow(model, size, small, "eager") for model in scale.flexible_models for size in scale.sizes]
    rows += [GridRow(model, size, small, "eager") for model, size in scale.native_models]
    rows += [GridRow(model, main, batch, backend)
             for model in (first, second) for batch in scale.batches for backend in BACKENDS]
    return list(dict.fromkeys(rows))  # in order, each once


# ---------------------------------------------------------------------------------------------------
# Sections


def environment(scale: Scale) -> dict:
    """Device, driver and library versions."""
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "triton": package_version("triton"), "leaps_engine": package_version("leaps-engine"),
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    if scale.device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        info |= {"device": properties.name, "capability": f"{properties.major}.{properties.minor}",
                 "multiprocessors": properties.multi_processor_count,
                 "memory_gib": round(properties.total_memory / 2**30, 1), "driver": _nvidia_smi("driver_version")}
    else:
        info |= {"device": f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)", "driver": None}
    return info


def copy_bandwidth(scale: Scale) -> dict:
    """Device-to-device copy bandwidth, counting bytes read plus bytes written (median of 20 copies)."""
    device = torch.device(scale.device)
    source = torch.rand(scale.copy_bytes // 4, device=device)  # random data, never zeros
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    times_ms = [_time_ms(lambda: target.copy_(source), device) for _ in range(20)]
    median_ms = statistics.median(times_ms)
    moved = 2 * source.numel() * source.element_size()
    return {"bytes_per_copy": moved, "median_ms": round(median_ms, 4), "gbps": round(moved / median_ms / 1e6, 1)}


def run_tests(scale: Scale, results: Path, tag: str, share_s: float) -> dict:
    """``pytest -m gpu`` over the whole test suite, bounded by ``share_s``; counts and failures."""
    junit = results / f".gpu_tests_{tag}.xml"
    log = results / f"gpu_tests_{tag}.log"
    command = [sys.executable, "-m", "pytest", "-v", "--durations=10", "-m", "gpu", "-p", "no:cacheprovider",
               "-p", "pytest_failures_now", f"--junitxml={junit}", str(REPO / "tests")]
    log.unlink(missing_ok=True)
    plugin_path = str(REPO / "benchmarks")
    environment = {"PYTHONPATH": os.pathsep.join(filter(None, [plugin_path, os.environ.get("PYTHONPATH")]))}
    outcome = run_bounded(command, share_s, log, environment)
    counts = _junit_counts(junit) if junit.exists() else _log_counts(log)
    summary = {"command": " ".join(command[1:]), **outcome, **counts}
    junit.unlink(missing_ok=True)
    return summary


def run_kernel_benchmark(scale: Scale, results: Path, tag: str, share_s: float, copy_gbps: float) -> dict:
    """``benchmarks/kernels.py``: the Triton kernels against eager first, then ``torch.compile`` at the
    larger batch with what is left of ``share_s``; each row's bandwidth as a share of the copy's."""
    started = time.monotonic()
    parts = [["--impl", "triton"],
             ["--impl", "compile", "--batch", str(scale.batches[1])]]
    rows, runs = [], []
    for extra in parts:
        left = share_s - (time.monotonic() - started)
        out = results / f".kernels_{tag}_{len(runs)}.json"
        command = [sys.executable, str(KERNELS_SCRIPT), "--device", scale.device, "--dtype",
                   "bfloat16" if scale.device == "cuda" else "float32", "--format", "json", "--out", str(out), *extra]
        if scale.device == "cpu":
            command += ["--iters", "2", "--warmup", "1"]
        outcome = run_bounded(command, left, results / f"gpu_kernels_{tag}.log") if left > 1 else _not_started()
        runs.append({"command": " ".join(command[1:]), **outcome})
        if out.exists():
            report = json.loads(out.read_text())
            seen = {(r["loss"], r["shape"], r["layout"], r["impl"]) for r in rows}
            rows += [r for r in report["rows"] if (r["loss"], r["shape"], r["layout"], r["impl"]) not in seen]
            out.unlink()
    for row in rows:
        if row.get("fwd_bwd_gbps") and copy_gbps:
            row["fwd_bwd_copy_fraction"] = round(row["fwd_bwd_gbps"] / copy_gbps, 3)
    return {"runs": runs, "rows": rows}


def run_grid(scale: Scale, results: Path, tag: str, deadline: float) -> dict:
    """Every planned row, by restartable workers, until the rows or the time run out."""
    plan = grid_plan(scale)
    log = results / f".grid_{tag}.jsonl"
    log.unlink(missing_ok=True)
    exits = []
    for _ in range(WORKER_RESTARTS + 1):
        finished = _read_log(log)
        if all(row.key in finished for row in plan) or deadline - time.time() < 1:
            break
        command = [sys.executable, __file__, "worker", "--log", str(log), "--scale",
                   "dry-run" if scale.device == "cpu" else "gpu"]
        outcome = run_bounded(command, deadline - time.time(), results / f"gpu_grid_{tag}.log")
        exits.append(outcome)
        started = _read_log(log, event="start")
        for key in set(started) - set(_read_log(log)):  # the row the worker died on
            why = ("not finished within the suite's time budget" if outcome["timed_out"]
                   else f"its process died (exit status {outcome['returncode']})")
            _append(log, {"event": "done", "key": key, "row": {"skipped": why}})
    finished = _read_log(log)
    rows = []
    for row in plan:
        measured = finished.get(row.key, {"skipped": "not reached within the suite's time budget"})
        rows.append({"model": row.model, "size": "x".join(map(str, row.size)), "batch": row.batch,
                     "backend": row.backend, **{k: v for k, v in measured.items() if k not in ("model", "batch")}})
    log.unlink(missing_ok=True)
    return {"workers": exits, "rows": rows}


def worker(scale: Scale, log: Path) -> int:
    """Measure the plan's rows not yet in ``log``, appending each; exit 3 if CUDA is left unusable."""
    from leaps_engine.engine.adapters import create_adapter
    from leaps_engine.engine.latency import bench_verifier, bench_weights, measure_latency
    from leaps_engine.errors import one_line

    device = torch.device(scale.device)
    networks = {}
    for row in grid_plan(scale):
        if row.key in _read_log(log):
            continue
        _append(log, {"event": "start", "key": row.key})
        try:
            if row.model not in networks:
                model = create_adapter(row.model, weights=bench_weights(row.model, "default"), device=device)
                networks[row.model] = (model, bench_verifier(model, "self", device))
            model, verifier = networks[row.model]
            measured = measure_latency(model, verifier, row.size, row.batch, row.backend, scale.dtype, scale.iters,
                                       scale.warmup)
            result = dataclasses.asdict(measured) | {
                "model_input": "x".join(map(str, model.spec.model_size(*row.size))),
                "verifier": "none" if verifier is None else ("self" if verifier is model else verifier.name)}
        except Exception as error:  # the row failed: record why (the whole traceback in the log) and go on
            traceback.print_exc()
            result = {"skipped": f"failed: {type(error).__name__}: {one_line(error)}"}
        _append(log, {"event": "done", "key": row.key, "row": result})
        if device.type == "cuda":
            try:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            except Exception:  # a CUDA fault: this context is gone, a fresh worker takes the rest
                return 3
    return 0


# ---------------------------------------------------------------------------------------------------
# Goals, report, summary


def goals(scale: Scale, grid: list[dict], kernels: list[dict], copy_gbps: float) -> list[dict]:
    """The GPU run's goals against what was measured (``met`` is None where a figure is missing)."""
    first = scale.flexible_models[0]
    main = "x".join(map(str, scale.main_size))
    small, large = scale.batches

    def best(batch: int) -> dict | None:
        lean = [r for r in grid if r["model"] == first and r["size"] == main and r["batch"] == batch
                and r["backend"] != "reference" and r.get("step_ms")]
        return min(lean, key=lambda r: r["step_ms"]) if lean else None

    reference = next((r for r in grid if r["model"] == first and r["size"] == main and r["batch"] == small
                      and r["backend"] == "reference" and r.get("step_ms")), None)
    best_small, best_large = best(small), best(large)
    out = []
    where = f"{first} {main} batch {small}"
    out.append(_goal(f"step time, {where}, best lean backend", f"< {STEP_GOAL_MS:g} ms",
                     best_small and best_small["step_ms"], lambda v: v < STEP_GOAL_MS, "ms",
                     best_small and best_small["backend"]))
    speedup = reference and best_small and reference["step_ms"] / best_small["step_ms"]
    out.append(_goal(f"speed-up over the reference loop, {where}", f">= {REFERENCE_SPEEDUP_GOAL:g}x", speedup,
                     lambda v: v >= REFERENCE_SPEEDUP_GOAL, "x", best_small and best_small["backend"]))
    throughput = best_small and best_large and (large / best_large["step_ms"]) / (small / best_small["step_ms"])
    out.append(_goal(f"videos/s at batch {large} over batch {small}, {first} {main}",
                     f">= {BATCH_THROUGHPUT_GOAL:g}x", throughput, lambda v: v >= BATCH_THROUGHPUT_GOAL, "x",
                     best_large and best_large["backend"]))
    for loss in ("priming", "bn_stats"):
        triton = [r for r in kernels if r["loss"] == loss and r["impl"] == "triton" and r.get("fwd_bwd_gbps")]
        largest = max(triton, key=lambda r: _elements(r["shape"]), default=None)
        fraction = largest and copy_gbps and largest["fwd_bwd_gbps"] / copy_gbps
        out.append(_goal(f"{loss} kernel bandwidth (forward+backward), largest activation",
                         f">= {BANDWIDTH_GOAL:.0%} of copy", fraction, lambda v: v >= BANDWIDTH_GOAL, "of copy",
                         largest and f"{largest['shape']} {largest['layout']}"))
    return out


def markdown(report: dict) -> str:
    env, sections = report["environment"], report["sections"]
    lines = [f"# GPU suite: {env['device']}", "",
             f"- date (UTC): {env['date_utc']}; wall time {report['wall_s']:.0f} s of a {report['budget_s']:.0f} s "
             f"budget{' (dry run)' if report['dry_run'] else ''}",
             f"- driver {env.get('driver')}; torch {env['torch']} (CUDA {env['cuda']}); triton {env['triton']}; "
             f"python {env['python']}; {env['cpu_count']} CPUs",
             f"- command: `{report['command']}`", "", "## Goals", "",
             "| goal | target | measured | met | where |", "|---|---|---:|---|---|"]
    for goal in report["goals"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[goal["met"]]
        lines.append(f"| {goal['goal']} | {goal['target']} | {_fmt(goal['measured'])} {goal['unit']} | {met} | "
                     f"{goal['where'] or '-'} |")
    tests = sections["tests"]
    lines += ["", "## Tests (`pytest -m gpu`)", "",
              f"{tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, {tests.get('errors', 0)} errors, "
              f"{tests.get('skipped', 0)} skipped in {tests['seconds']:.0f} s"
              f"{'; stopped at its share of the budget' if tests['timed_out'] else ''}."]
    lines += [f"- `{f['test']}`: {f['message']}" for f in tests.get("failures", [])]
    copy = sections["copy"]
    lines += ["", "## Copy bandwidth", "",
              f"{copy['gbps']} GB/s (device-to-device copy, {copy['bytes_per_copy'] / 2**20:.0f} MiB read + "
              f"written, median of 20: {copy['median_ms']} ms)."]
    lines += ["", f"## Step latency (paper Table 4), {report['dtype']} (reference: float16 autocast on CUDA)", "",
              "| model | x* size (model input) | batch | backend | verifier | forward ms | backprop ms | "
              "step ms (p10-p90) | videos/s | peak MiB | warm-up s | vs reference |",
              "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    reference = {(r["model"], r["size"], r["batch"]): r["step_ms"] for r in sections["grid"]["rows"]
                 if r["backend"] == "reference" and r.get("step_ms")}
    for row in sections["grid"]["rows"]:
        start = (f"| {row['model']} | {row['size']} ({row.get('model_input', '-')}) | {row['batch']} | "
                 f"{row['backend']} |")
        if not row.get("step_ms"):
            lines.append(f"{start} | skipped: {row.get('skipped')} | | | | | | |")
            continue
        base = reference.get((row["model"], row["size"], row["batch"]))
        lines.append(f"{start} {row['verifier']} | {row['forward_ms']:.2f} | {row['backward_ms']:.2f} | "
                     f"{row['step_ms']:.2f} ({row['step_p10_ms']:.2f}-{row['step_p90_ms']:.2f}) | "
                     f"{row['batch'] * 1e3 / row['step_ms']:.1f} | {_fmt(row['peak_mem_mb'])} | "
                     f"{row['warmup_s']:.1f} | "
                     f"{_ratio(base, row['step_ms'])} |")
    lines += ["", "forward: x* to every loss term; backprop: the input gradient; step: forward + backprop + Adam "
              "update; medians over the timed iterations. Random weights (latency does not depend on them)."]
    kernels = sections["kernels"]
    lines += ["", "## Fused losses (`benchmarks/kernels.py`)", "",
              "| loss | activation | layout | impl | fwd+bwd ms (p10-p90) | GB/s | of copy | speed-up vs eager |",
              "|---|---|---|---|---:|---:|---:|---:|"]
    for row in kernels["rows"]:
        start = f"| {row['loss']} | {row['shape']} | {row['layout']} | {row['impl']} |"
        if row.get("fwd_bwd_ms") is None:
            lines.append(f"{start} skipped: {row.get('skipped')} | | | |")
            continue
        lines.append(f"{start} {row['fwd_bwd_ms']:.4f} ({row['fwd_bwd_p10_ms']:.4f}-{row['fwd_bwd_p90_ms']:.4f}) | "
                     f"{_fmt(row['fwd_bwd_gbps'])} | {_percent(row.get('fwd_bwd_copy_fraction'))} | "
                     f"{_fmt(row['fwd_bwd_speedup'])}x |")
    stopped = [run["command"] for run in kernels["runs"] if run["timed_out"] or run["returncode"]]
    lines += [f"- stopped or failed: `{command}`" for command in stopped]
    return "\n".join(lines) + "\n"


def summary(report: dict, written: list[Path]) -> str:
    tests = report["sections"]["tests"]
    grid = report["sections"]["grid"]["rows"]
    measured = sum(1 for r in grid if r.get("step_ms"))
    lines = [f"gpu suite on {report['environment']['device']}: {report['wall_s']:.0f} s",
             f"tests: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
             f"{tests.get('errors', 0)} errors, {tests.get('skipped', 0)} skipped"
             f"{' (stopped: time share spent)' if tests['timed_out'] else ''}",
             f"copy bandwidth: {report['sections']['copy']['gbps']} GB/s; "
             f"grid rows measured: {measured} of {len(grid)}"]
    lines += [f"failed: {f['test']}: {f['message']}" for f in tests.get("failures", [])[:10]]
    lines += [f"goal {g['goal']}: {_fmt(g['measured'])} {g['unit']} ({g['target']}): "
              f"{ {True: 'met', False: 'NOT met', None: 'not measured'}[g['met']]}" for g in report["goals"]]
    lines += [f"wrote {path}" for path in written]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Helpers


def run_bounded(command: list[str], timeout_s: float, log: Path, environment: dict | None = None) -> dict:
    """Run ``command`` in its own process group, output appended to ``log``; kill the group at ``timeout_s``.
    ``environment`` adds to (or overrides) this process's environment variables."""
    started = time.monotonic()
    with open(log, "a") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=REPO, env={**os.environ, **(environment or {})})
        try:
            returncode, timed_out = process.wait(timeout=max(timeout_s, 0.1)), False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            returncode, timed_out = process.wait(), True
    return {"returncode": returncode, "timed_out": timed_out, "seconds": round(time.monotonic() - started, 1)}


def _not_started() -> dict:
    return {"returncode": None, "timed_out": True, "seconds": 0.0}


def _junit_counts(path: Path) -> dict:
    suite = ElementTree.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    total, failed, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
    failures = []
    for case in suite.iter("testcase"):
        for problem in (*case.findall("failure"), *case.findall("error")):
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            failures.append({"test": f"{case.get('classname')}::{case.get('name')}",
                             "message": (message[0] if message else "")[:300]})
    return {"passed": total - failed - errors - skipped, "failed": failed, "errors": errors, "skipped": skipped,
            "failures": failures}


def _log_counts(log: Path) -> dict:
    """Counts from ``pytest -v`` lines, for a run stopped before it wrote its JUnit report."""
    outcomes = {"PASSED": 0, "FAILED": 0, "ERROR": 0, "SKIPPED": 0}
    failures = []
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        test, _, rest = line.partition(" ")
        outcome = rest.split(" ", 1)[0]
        if "::" in test and outcome in outcomes:
            outcomes[outcome] += 1
            if outcome in ("FAILED", "ERROR"):
                failures.append({"test": test, "message": "see the log"})
    failures.append({"test": "pytest", "message": "stopped before its JUnit report: counts read from the log"})
    return {"passed": outcomes["PASSED"], "failed": outcomes["FAILED"], "errors": outcomes["ERROR"],
            "skipped": outcomes["SKIPPED"], "failures": failures}


def _read_log(log: Path, event: str = "done") -> dict[str, dict]:
    """``key -> row`` of the log's ``event`` lines (a torn last line is ignored)."""
    found = {}
    if log.exists():
        for line in log.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if entry.get("event") == event:
                    found[entry["key"]] = entry.get("row", {})
    return found


def _append(log: Path, entry: dict) -> None:
    with open(log, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _time_ms(fn, device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e3


def _goal(goal: str, target: str, measured: float | None, check, unit: str, where: str | None) -> dict:
    value = None if measured is None or measured is False else round(float(measured), 3)
    return {"goal": goal, "target": target, "measured": value, "unit": unit, "where": where or None,
            "met": None if value is None else bool(check(value))}


def _elements(shape: str) -> int:
    count = 1
    for dim in shape.split("x"):
        count *= int(dim)
    return count


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _ratio(base: float | None, value: float) -> str:
    return f"{base / value:.2f}x" if base else "-"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _nvidia_smi(field: str) -> str | None:
    try:
        output = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return output.strip().splitlines()[0] if output.strip() else None


def _write_atomic(path: Path, text: str) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    worker_parser = sub.add_parser("worker", help="internal: measure grid rows, appending to --log")
    worker_parser.add_argument("--log", type=Path, required=True)
    worker_parser.add_argument("--scale", choices=("gpu", "dry-run"), required=True)
    parser.add_argument("--dry-run", action="store_true", help="the whole suite on the CPU at tiny sizes")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--budget", type=float, default=290.0, help="seconds for the whole suite (default 290)")
    args = parser.parse_args(argv)
    if args.mode == "worker":
        return worker(DRY_RUN_SCALE if args.scale == "dry-run" else GPU_SCALE, args.log)

    scale = DRY_RUN_SCALE if args.dry_run else GPU_SCALE
    if scale.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device is visible; use --dry-run to run the suite on the CPU", file=sys.stderr)
        return 2
    started = time.time()
    deadline = started + args.budget - REPORT_RESERVE_S
    args.results.mkdir(parents=True, exist_ok=True)
    env = environment(scale)
    tag = "cpu_dry_run" if args.dry_run else env["device"].split()[-1].lower()
    print(f"gpu suite: {env['device']}, torch {env['torch']}, triton {env['triton']}; budget {args.budget:.0f} s",
          flush=True)
    copy = copy_bandwidth(scale)
    print(f"copy bandwidth: {copy['gbps']} GB/s", flush=True)
    tests = run_tests(scale, args.results, tag, min(scale.tests_share_s, deadline - time.time()))
    print(f"tests: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed ({tests['seconds']} s)", flush=True)
    kernels = run_kernel_benchmark(scale, args.results, tag, min(scale.kernels_share_s, deadline - time.time()),
                                   copy["gbps"])
    print(f"kernel benchmark: {len(kernels['rows'])} rows", flush=True)
    grid = run_grid(scale, args.results, tag, deadline)
    report = {"command": " ".join(["python", "benchmarks/gpu_suite.py", *(argv or sys.argv[1:])]),
              "dry_run": args.dry_run, "budget_s": args.budget, "dtype": scale.dtype, "environment": env,
              "sections": {"copy": copy, "tests": tests, "kernels": kernels, "grid": grid}}
    report["goals"] = goals(scale, grid["rows"], kernels["rows"], copy["gbps"])
    report["wall_s"] = round(time.time() - started, 1)
    written = [args.results / f"gpu_suite_{tag}.json", args.results / f"gpu_suite_{tag}.md"]
    _write_atomic(written[0], json.dumps(report, indent=2) + "\n")
    _write_atomic(written[1], markdown(report))
    logs = [args.results / f"gpu_{section}_{tag}.log" for section in ("tests", "kernels", "grid")]
    print(summary(report, [*written, *(log for log in logs if log.exists())]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
