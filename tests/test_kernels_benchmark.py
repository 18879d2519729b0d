"""benchmarks/kernels.py: the JSON rows and their timings, the Triton rows skipped on the CPU, the
interpreter opt-in, the Markdown table, and the refusal to time an implementation that disagrees."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from leaps_engine.kernels.registry import triton_problem

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kernels.py"
# Odd, tiny activations C x T x H x W, one of them channels_last_3d; one batch of 2, few iterations.
TINY = ["--device", "cpu", "--shape", "5x3x7x5", "--shape", "6x3x5x7:cl", "--batch", "2", "--iters", "2",
        "--warmup", "1"]
ROW_KEYS = {"loss", "shape", "layout", "impl", "dtype", "fwd_ms", "fwd_p10_ms", "fwd_p90_ms", "fwd_bwd_ms",
            "fwd_bwd_p10_ms", "fwd_bwd_p90_ms", "fwd_gbps", "fwd_bwd_gbps", "fwd_speedup", "fwd_bwd_speedup",
            "warmup_s", "iters", "timer", "skipped"}
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def bench():
    """The script, imported as a module (registered in sys.modules for its dataclasses)."""
    spec = importlib.util.spec_from_file_location("kernels_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _assert_measured(row, iters):
    assert row["skipped"] is None and row["iters"] == iters
    for phase in ("fwd", "fwd_bwd"):
        assert 0 < row[f"{phase}_p10_ms"] <= row[f"{phase}_ms"] <= row[f"{phase}_p90_ms"]
        assert row[f"{phase}_gbps"] > 0 and row[f"{phase}_speedup"] > 0
    assert row["warmup_s"] >= 0  # check and warm-up, rounded to ms


def test_cpu_json_rows_are_timed_and_triton_is_skipped(bench, tmp_path, capsys):
    out = tmp_path / "kernels.json"
    bench.main([*TINY, "--format", "json", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report == json.loads(capsys.readouterr().out)
    assert {"device", "torch", "triton", "dtype", "command"} <= set(report["meta"])
    assert "--include-interpreter" in report["meta"]["triton_note"]
    assert "--shape 6x3x5x7:cl" in report["meta"]["command"]
    rows = report["rows"]
    expected = [(shape, layout, loss, impl) for shape, layout in (("2x5x3x7x5", "contiguous"),
                                                                  ("2x6x3x5x7", "channels_last_3d"))
                for loss in ("priming", "bn_stats") for impl in ("eager", "compile", "triton")]
    assert [(r["shape"], r["layout"], r["loss"], r["impl"]) for r in rows] == expected
    for row in rows:
        assert set(row) == ROW_KEYS and row["dtype"] == "float32"
        if row["impl"] == "triton":
            assert "--include-interpreter" in row["skipped"] and row["fwd_ms"] is None
        else:
            _assert_measured(row, iters=2)
        if row["impl"] == "eager":
            assert row["fwd_speedup"] == row["fwd_bwd_speedup"] == 1.0
    assert list(tmp_path.glob("*.tmp")) == []  # the atomic write left no temporary file behind


@pytest.mark.skipif(triton_problem(torch.device("cpu")) is not None, reason="Triton interpreter not available")
def test_interpreter_opt_in_times_the_triton_rows(bench, capsys):
    rows = bench.main(["--device", "cpu", "--shape", "5x3x7x5", "--batch", "2", "--iters", "1", "--warmup", "0",
                       "--impl", "triton", "--include-interpreter", "--format", "csv"])
    assert [(row.loss, row.impl) for row in rows] == [(loss, impl) for loss in ("priming", "bn_stats")
                                                     for impl in ("eager", "triton")]
    for row in rows:
        assert row.skipped is None and row.fwd_ms > 0 and row.fwd_bwd_ms > 0
    assert capsys.readouterr().out.splitlines()[0].startswith("loss,shape,layout,impl,dtype,fwd_ms")


def test_markdown_table_comes_last(bench, capsys):
    bench.main(["--device", "cpu", "--shape", "5x3x7x5", "--batch", "1", "--iters", "1", "--warmup", "0",
                "--impl", "eager", "--impl", "triton", "--loss", "bn_stats"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("- device: ") and any(line.startswith("- command: ") for line in lines)
    header = lines.index("| loss | shape | layout | impl | fwd ms | fwd+bwd ms (p10-p90) | GB/s | speed-up |")
    assert len(lines) == header + 4  # header, separator, the eager row, the skipped triton row
    assert lines[-2].startswith("| bn_stats | 1x5x3x7x5 | contiguous | eager | ")
    assert "skipped" in lines[-1]


def test_a_wrong_implementation_is_refused(bench, monkeypatch, tmp_path):
    def off_by_a_percent(fn, **_options):  # stands for a miscompiled reference
        return lambda *args: 1.01 * fn(*args)

    monkeypatch.setattr(torch, "compile", off_by_a_percent)
    out = tmp_path / "kernels.json"
    with pytest.raises(SystemExit, match="compile priming 2x5x3x7x5 contiguous float32: loss differs from eager"):
        bench.main([*TINY, "--impl", "compile", "--format", "json", "--out", str(out)])
    assert not out.exists()


def test_bad_shape_is_a_usage_error(bench, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--device", "cpu", "--shape", "5x3x7"])
    assert exit_info.value.code == 2 and "CxTxHxW" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_rows_time_every_implementation(bench, dtype):
    rows = bench.main(["--device", "cuda", "--dtype", dtype, "--shape", "67x3x13x11", "--shape", "64x4x14x14:cl",
                       "--batch", "1", "--batch", "3", "--iters", "3", "--warmup", "1", "--format", "json"])
    assert len(rows) == 2 * 2 * 2 * 3
    for row in rows:
        assert row.dtype == dtype
        _assert_measured(row.__dict__, iters=3)
