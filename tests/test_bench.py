"""``leaps-engine bench``: the latency rows, their JSON contract, the tables, and bad input."""

import csv
import io
import json

import pytest
import torch
from click.testing import CliRunner

from leaps_engine.cli import main
from leaps_engine.config import BENCH_BACKENDS
from leaps_engine.engine.latency import measure_latency

JSON_KEYS = {"model", "resolution", "batch", "backend", "dtype", "forward_ms", "backward_ms", "step_ms", "peak_mem_mb"}


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])



@pytest.mark.parametrize("backend", ["reference", "eager"])
def test_measured_rows_have_ordered_positive_timings(model, backend):
    row = measure_latency(model, model, (4, 16, 16), 2, backend, "float32", iters=4, warmup=1)
    assert row.skipped is None and row.iters == 4 and row.batch == 2 and row.resolution == "4x16x16"
    for phase in ("forward", "backward", "step"):
        low, mid, high = (getattr(row, f"{phase}{suffix}_ms") for suffix in ("_p10", "", "_p90"))
        assert 0 < low <= mid <= high
    assert row.step_ms >= row.forward_ms
    assert row.iters_per_s == pytest.approx(1000 / row.step_ms, rel=1e-2)
    assert row.warmup_s > 0


def test_reference_backend_leaves_the_model_frozen(model):
    measure_latency(model, model, (4, 16, 16), 1, "reference", "float32", iters=1, warmup=0)
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())


def test_fused_backend_is_skipped_with_a_reason_on_the_cpu(model):
    row = measure_latency(model, model, (4, 16, 16), 1, "fused", "float32", iters=1, warmup=0)
    assert row.skipped and "CUDA" in row.skipped and row.step_ms is None


def test_bench_json_contract(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--size", "4x16x16", "--size", "4x24x24", "--backend", "reference", "--backend",
                     "eager", "--iters", 2, "--warmup", 1, "--batch", 2, "--format", "json", "--out", out)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows == json.loads(out.read_text())
    assert [(r["resolution"], r["backend"]) for r in rows] == [
        ("4x16x16", "reference"), ("4x16x16", "eager"), ("4x24x24", "reference"), ("4x24x24", "eager")]
    for row in rows:
        assert set(row) >= JSON_KEYS
        assert row["model"] == "embedded" and row["batch"] == 2 and row["dtype"] == "float32"
        assert row["step_ms"] > 0 and row["forward_ms"] > 0 and row["backward_ms"] > 0


def test_bench_markdown_and_csv_tables():
    result = run_cli("bench", "--size", "4x16x16", "--iters", 2, "--warmup", 0, "--backend", "reference",
                     "--backend", "eager", "--backend", "fused")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "device: cpu" in text and "torch " + torch.__version__.split("+")[0] in text
    assert "command: leaps-engine" in text
    assert "| embedded | 4x16x16 (4x16x16) | self | reference | float32 |" in text
    assert "1.00x |" in text and "skipped: the Triton kernels need CUDA" in text
    result = run_cli("bench", "--size", "4x16x16", "--iters", 1, "--warmup", 0, "--backend", "eager", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1 and rows[0]["backend"] == "eager" and float(rows[0]["step_ms"]) > 0


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "no_such_model"], "unknown model"),
    (["--size", "8x16"], "--size must look like TxHxW"),
    (["--batch", "0"], "--batch and --iters must be >= 1"),
    (["--size", "0x16x16"], "--size must be three positive integers"),
    (["--device", "cuda:0"], "CUDA is not available"),
])
def test_bench_bad_input_is_one_line(args, message, tmp_path):
    out = tmp_path / "table.md"
    result = run_cli("bench", "--iters", 1, "--warmup", 0, "--out", out, *args)
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", BENCH_BACKENDS)
def test_latency_backends_run_on_cuda(cuda_model, backend):
    model = cuda_model
    row = measure_latency(model, model, (8, 64, 64), 2, backend, "bfloat16", iters=3, warmup=2)
    assert row.skipped is None and row.iters == 3 and row.device.startswith("cuda")
    assert row.dtype == ("float16" if backend == "reference" else "bfloat16")
    for phase in ("forward", "backward", "step"):
        assert getattr(row, f"{phase}_ms") > 0
    assert row.peak_mem_mb > 0
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
