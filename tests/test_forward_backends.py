"""Forward backends: ONNX Runtime against torch for stimulus features, scoring and bench, and their errors."""

import json

import pytest
import torch
from click.testing import CliRunner

from leaps_engine import SynthesisConfig, Target, synthesize
from leaps_engine.cli import main
from leaps_engine.cli.evaluate import run_evaluate
from leaps_engine.engine.embedded.generator import generate_stimulus
from leaps_engine.errors import LeapsError
from leaps_engine.export import _exported
from leaps_engine.export.backends import create_forward_backend, forward_problem

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def onnxruntime_backend(model):
    return create_forward_backend("onnxruntime", model, weights="embedded")


def test_onnxruntime_logits_and_tap_means_match_torch(model, onnxruntime_backend):
    video = torch.randn(5, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    torch_backend = create_forward_backend("torch", model)
    torch.testing.assert_close(onnxruntime_backend.logits(video), torch_backend.logits(video), rtol=1e-4, atol=1e-5)
    taps = [model.taps[2], model.taps[0]]  # any subset, in any order
    logits, means = onnxruntime_backend.tap_means(video, taps)
    expected_logits, expected_means = torch_backend.tap_means(video, taps)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-4, atol=1e-5)
    for got, expected in zip(means, expected_means, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert [m.shape[1] for m in means] == [m.shape[1] for m in expected_means]


def test_batches_above_the_largest_are_split_and_each_size_gets_its_graph(model):
    backend = create_forward_backend("onnxruntime", model, weights="embedded", max_batch=2)
    for size in ((8, 32, 32), (8, 40, 40)):
        video = torch.randn(5, 3, *size, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(backend.logits(video), model(video), rtol=1e-4, atol=1e-5)
    assert sorted(graph.size for graph in backend._runners) == [(8, 32, 32), (8, 40, 40)]


def test_a_second_backend_reuses_the_cached_export(model, onnxruntime_backend, monkeypatch):
    video = torch.randn(2, 3, 8, 32, 32)
    onnxruntime_backend.logits(video)  # makes sure the export is cached

    def no_export(*args, **kwargs):
        raise AssertionError("the cached ONNX file should have been used")

    monkeypatch.setattr(_exported, "export_onnx", no_export)
    again = create_forward_backend("onnxruntime", model, weights="embedded")
    torch.testing.assert_close(again.logits(video), onnxruntime_backend.logits(video))


def test_a_backend_that_differs_from_eager_on_first_use_is_an_error(model, monkeypatch):
    from leaps_engine.export.onnxruntime import OnnxRuntimeForward

    real_execute = OnnxRuntimeForward.execute

    def wrong(self, runner, graph, video):
        return [value * -1 for value in real_execute(self, runner, graph, video)]

    monkeypatch.setattr(OnnxRuntimeForward, "execute", wrong)
    backend = create_forward_backend("onnxruntime", model, weights="embedded")
    with pytest.raises(LeapsError, match="onnxruntime backend for embedded at 8x32x32: output logits differs"):
        backend.logits(torch.randn(2, 3, 8, 32, 32))


def test_torch_backend_in_bfloat16_stays_close(model):
    video = torch.randn(2, 3, 8, 32, 32)
    half = create_forward_backend("torch", model, dtype="bfloat16").logits(video)
    assert half.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(half.flatten(), model(video).flatten(), dim=0) > 0.99


def test_problems_are_named():
    cpu = torch.device("cpu")
    assert forward_problem("torch", cpu) is None and forward_problem("onnxruntime", cpu) is None
    assert forward_problem("onnxruntime", cpu, "bfloat16") == "the onnxruntime backend runs float32 or float16"
    assert forward_problem("tensorrt", cpu) in ("tensorrt not installed (pip install 'leaps-engine[gpu]')",
                                                "TensorRT needs a CUDA device")
    with pytest.raises(LeapsError, match="unknown forward backend 'tvm'"):
        forward_problem("tvm", cpu)
    with pytest.raises(LeapsError, match="unknown forward backend 'tvm'"):
        create_forward_backend("tvm", None)


def test_stimulus_features_through_onnxruntime_give_the_same_synthesis(model, verifier, onnxruntime_backend):
    targets = [Target(3, [generate_stimulus(3, seed=1), generate_stimulus(3, seed=2)]), Target(5, generate_stimulus(5, 3))]
    config = SynthesisConfig.from_preset("embedded", steps=3, seed=0)
    plain = synthesize(model, targets, verifier=verifier, config=config)
    exported = synthesize(model, targets, verifier=verifier, config=config, forward_backend=onnxruntime_backend)
    for term in ("total", "priming"):
        torch.testing.assert_close(exported.history[term], plain.history[term], rtol=1e-4, atol=1e-6)


def test_synthesis_refuses_a_backend_of_another_model(model, verifier):
    other = create_forward_backend("onnxruntime", verifier)
    with pytest.raises(LeapsError, match="runs embedded_verifier, not the inverted model embedded"):
        synthesize(model, [Target(0, generate_stimulus(0, 0))], config=SynthesisConfig.from_preset("embedded", steps=1),
                   forward_backend=other)


@pytest.fixture(scope="module")
def result_folders(tmp_path_factory):
    parent = tmp_path_factory.mktemp("runs")
    result = run_cli("synthesize", "--class", "0", "--class", "7", "--steps", "3", "--out", parent / "torch",
                     "--forward-backend", "onnxruntime")
    assert result.exit_code == 0, result.output
    return parent


def test_synthesize_records_the_forward_backend(result_folders):
    summary = json.loads((result_folders / "torch" / "result.json").read_text())
    assert summary["acceleration"]["forward_backend"] == "onnxruntime"


def test_evaluate_gives_the_same_table_with_onnxruntime(result_folders, capsys):
    rows = {}
    for kind in ("torch", "onnxruntime"):
        rows[kind] = run_evaluate(paths=[str(result_folders)], evaluator="embedded_evaluator", output_format="json",
                                  forward_backend=kind)
        capsys.readouterr()
    [torch_row], [onnx_row] = rows["torch"], rows["onnxruntime"]
    assert torch_row.keys() == onnx_row.keys()
    for key, value in torch_row.items():
        if isinstance(value, (float, dict)):
            assert onnx_row[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        else:
            assert onnx_row[key] == value, key


def test_evaluate_with_an_unknown_backend_fails_before_any_work(result_folders):
    with pytest.raises(LeapsError, match="unknown forward backend 'tvm'; use one of torch, onnxruntime, tensorrt"):
        run_evaluate(paths=[str(result_folders)], forward_backend="tvm")


def test_bench_forward_rows_next_to_torch(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--size", "8x32x32", "--forward-backend", "torch", "--forward-backend", "onnxruntime",
                     "--forward-backend", "tensorrt", "--iters", "2", "--warmup", "1", "--batch", "2",
                     "--format", "json", "--out", out)
    assert result.exit_code == 0, result.output
    rows = {row["backend"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"torch", "onnxruntime", "tensorrt"}
    assert all(row["forward_only"] and row["step_ms"] is None for row in rows.values())
    for kind in ("torch", "onnxruntime"):
        assert rows[kind]["forward_ms"] > 0 and rows[kind]["skipped"] is None and rows[kind]["batch"] == 2
    assert rows["tensorrt"]["skipped"] and rows["tensorrt"]["forward_ms"] is None


def test_bench_markdown_puts_forward_rows_in_their_own_table():
    result = run_cli("bench", "--size", "8x32x32", "--backend", "eager", "--forward-backend", "torch",
                     "--forward-backend", "onnxruntime", "--iters", "2", "--warmup", "1")
    assert result.exit_code == 0, result.output
    assert "| forward backend |" in result.output and "speed-up vs torch" in result.output
    assert "| embedded | 8x32x32 (8x32x32) | onnxruntime | float32 |" in result.output
    assert "| embedded | 8x32x32 (8x32x32) | self | eager | float32 |" in result.output
