"""ONNX and AOTInductor export: parity rules, cache keys, the verified export and the ``export`` command."""

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from leaps_engine.cli import main
from leaps_engine.errors import LeapsError
from leaps_engine.export import cache, parity
from leaps_engine.export.graph import graph_spec_for, sidecar_path

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- parity rules -------------------------------------------------------------------------------------------

def test_float32_parity_is_allclose_and_half_parity_is_cosine():
    reference = torch.linspace(-3, 3, 50)
    close = reference + 1e-5
    assert parity.compare_output("x", reference, close, "float32").passed
    assert not parity.compare_output("x", reference, reference + 0.05, "float32").passed
    # a 5% perturbation keeps cosine ~0.999: good enough at half precision, not at float32
    noisy = reference * (1 + 0.05 * torch.randn(50, generator=torch.Generator().manual_seed(0)))
    assert parity.compare_output("x", reference, noisy, "float16").passed
    assert not parity.compare_output("x", reference, -reference, "float16").passed


def test_parity_fails_on_wrong_shape_and_non_finite_values():
    reference = torch.ones(4, 3)
    assert not parity.compare_output("x", reference, torch.ones(4, 2), "float32").passed
    broken = reference.clone()
    broken[0, 0] = float("nan")
    assert not parity.compare_output("x", reference, broken, "float16").passed


def test_failure_line_names_the_worst_output():
    reference = [torch.ones(2, 3), torch.ones(2, 3)]
    candidate = [torch.ones(2, 3), -torch.ones(2, 3)]
    parities = parity.compare_outputs(["logits", "tap0"], reference, candidate, "float32")
    message = parity.describe_failure(parities, "float32")
    assert message.startswith("output tap0 differs from eager") and "\n" not in message
    assert parity.describe_failure(parities[:1], "float32") is None


# --- cache keys ---------------------------------------------------------------------------------------------

ONNX_KEY = {"model": "r3d_18", "weights": "abc", "size": (8, 112, 112), "taps": ("layer1",), "dtype": "float32",
            "opset": 20, "versions": {"torch": "2.14.1", "onnxscript": "0.7.2"}}


@pytest.mark.parametrize("field, other", [("model", "r3d_18b"), ("weights", "abd"), ("size", (8, 112, 113)),
                                          ("taps", ()), ("dtype", "float16"), ("opset", 18),
                                          ("versions", {"torch": "2.11.0", "onnxscript": "0.7.2"})])
def test_onnx_cache_key_changes_with_every_input(field, other):
    assert cache.onnx_cache_key(**ONNX_KEY) == cache.onnx_cache_key(**dict(reversed(ONNX_KEY.items())))
    assert cache.onnx_cache_key(**ONNX_KEY) != cache.onnx_cache_key(**{**ONNX_KEY, field: other})


def test_weights_fingerprint_follows_the_values(model):
    copy = type(model.model)()
    copy.load_state_dict(model.model.state_dict())
    assert cache.weights_fingerprint(copy) == cache.weights_fingerprint(model.model)
    with torch.no_grad():
        next(copy.parameters()).view(-1)[0] += 1e-3
    assert cache.weights_fingerprint(copy) != cache.weights_fingerprint(model.model)


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAPS_ENGINE_CACHE", str(tmp_path / "c"))
    assert cache.cache_dir("onnx") == tmp_path / "c" / "onnx" and (tmp_path / "c" / "onnx").is_dir()
    assert cache.artifact_name("r3d_18", (8, 112, 112), "0123456789abcdef0123", ".onnx") == \
        "r3d_18-8x112x112-0123456789abcdef.onnx"


# --- export ---------------------------------------------------------------------------------------------------

def test_graph_spec_uses_the_model_input_size_and_checks_taps(model):
    from leaps_engine.engine.adapters import get_adapter_entry

    assert graph_spec_for(model, (8, 32, 32), taps=True).taps == model.taps
    assert graph_spec_for(model, (8, 32, 32), taps=True).output_names == ("logits", "tap0", "tap1", "tap2", "tap3")
    with pytest.raises(LeapsError, match="no tap 'nope'"):
        graph_spec_for(model, (8, 32, 32), taps=["nope"])
    with pytest.raises(LeapsError, match="impossible size"):
        graph_spec_for(model, (0, 32, 32))
    assert get_adapter_entry("x3d_s").spec.model_size(4, 64, 64) == (13, 160, 160)  # fixed size
    assert get_adapter_entry("slow_r50").spec.model_size(4, 64, 64) == (8, 193, 193)  # raised to its minimum


def test_onnx_export_with_taps_matches_eager_and_records_it(model, tmp_path):
    from leaps_engine.export.onnx import export_onnx

    graph = graph_spec_for(model, (8, 32, 32), taps=True)
    path = tmp_path / "embedded.onnx"
    description = export_onnx(model, graph, path, weights="embedded")
    onnx.checker.check_model(str(path), full_check=True)
    assert json.loads(sidecar_path(path).read_text()) == description
    assert description["input"]["shape"] == ["batch", 3, 8, 32, 32] and description["opset"] == 20
    assert [o["name"] for o in description["outputs"]] == ["logits", "tap0", "tap1", "tap2", "tap3"]
    assert [o.get("tap") for o in description["outputs"][1:]] == list(model.taps)
    assert description["sha256"] == cache.file_sha256(path)
    assert all(v["passed"] and v["cosine"] > 0.9999 for v in description["verification"]["outputs"].values())

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    video = torch.randn(3, 3, 8, 32, 32)  # a batch size the export never saw
    outputs = session.run(None, {"video": video.numpy()})
    logits, taps = model.forward_with_taps(video)
    torch.testing.assert_close(torch.from_numpy(outputs[0]), logits, rtol=1e-4, atol=1e-5)
    for got, tap in zip(outputs[1:], taps, strict=True):
        torch.testing.assert_close(torch.from_numpy(got), tap.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)


def test_onnx_export_in_float16_passes_by_cosine(model, tmp_path):
    from leaps_engine.export.onnx import export_onnx

    description = export_onnx(model, graph_spec_for(model, (8, 32, 32), dtype="float16"), tmp_path / "h.onnx",
                              weights="embedded")
    assert description["input"]["dtype"] == "float16"
    assert description["verification"]["outputs"]["logits"]["cosine"] >= 0.99


def test_an_export_that_fails_verification_is_not_written(model, tmp_path, monkeypatch):
    from leaps_engine.export import onnx as onnx_export

    def shifted(*args):
        return [value + 1.0 for value in parity_eager(*args)]

    parity_eager = parity.eager_outputs
    monkeypatch.setattr(parity, "eager_outputs", shifted)
    with pytest.raises(LeapsError, match="fails verification at batch 2: output logits differs from eager"):
        onnx_export.export_onnx(model, graph_spec_for(model, (8, 32, 32)), tmp_path / "bad.onnx", weights="embedded")
    assert list(tmp_path.iterdir()) == []  # neither the model, its sidecar nor a temporary file


@pytest.mark.parametrize("name, size", [("r3d_18", (4, 32, 32)), ("x3d_s", (13, 160, 160))])
def test_torchvision_and_pytorchvideo_models_export_with_taps(name, size, tmp_path):
    from leaps_engine.engine.adapters import create_adapter
    from leaps_engine.export.onnx import export_onnx

    adapter = create_adapter(name, weights="random")
    description = export_onnx(adapter, graph_spec_for(adapter, size, taps=True), tmp_path / f"{name}.onnx",
                              weights="random")
    figures = description["verification"]["outputs"]
    assert len(figures) == 1 + len(adapter.taps)
    assert all(v["passed"] for v in figures.values())


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("swin3d_t", (32, 224, 224)), ("mvit_v2_s", (16, 224, 224))])
def test_video_transformers_export_with_taps(name, size, tmp_path):
    from leaps_engine.engine.adapters import create_adapter
    from leaps_engine.export.onnx import export_onnx

    adapter = create_adapter(name, weights="random")
    description = export_onnx(adapter, graph_spec_for(adapter, size, taps=True), tmp_path / f"{name}.onnx",
                              weights="random")
    assert all(v["passed"] for v in description["verification"]["outputs"].values())


# --- the export command ---------------------------------------------------------------------------------------

def test_export_command_writes_a_verified_onnx_file(tmp_path):
    out = tmp_path / "model.onnx"
    result = run_cli("export", "--out", out, "--taps", "--max-batch", "8")
    assert result.exit_code == 0, result.output
    assert "tap3" in result.output and f"wrote {out}" in result.output
    description = json.loads(sidecar_path(out).read_text())
    assert description["model"] == "embedded" and description["input"]["batch"] == [1, 8]


def test_export_command_writes_a_verified_aoti_package(tmp_path):
    out = tmp_path / "model.pt2"
    result = run_cli("export", "--format", "aoti", "--out", out)
    assert result.exit_code == 0, result.output
    assert json.loads(sidecar_path(out).read_text())["format"] == "aoti"
    runner = torch._inductor.aoti_load_package(str(out))
    video = torch.randn(3, 3, 8, 32, 32)
    from leaps_engine.engine.adapters import create_adapter

    outputs = runner(video)
    logits = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
    torch.testing.assert_close(logits, create_adapter("embedded")(video), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["nosuch"], "unknown model 'nosuch'"),
    (["--size", "8x0x32"], "impossible size 8x0x32"),
    (["--size", "8x32"], "--size must look like TxHxW"),
    (["--format", "aoti", "--out", "model.onnx"], "must end in .pt2"),
    (["--format", "aoti", "--dtype", "float16"], "exports float32 only"),
    (["--out", "missing/model.onnx"], "folder missing does not exist"),
    (["--weights", "nothere.pt"], "weights file not found"),
])
def test_export_bad_input_is_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("export", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert [p for p in Path(tmp_path).iterdir()] == []


def test_import_leaps_engine_needs_no_export_package():
    import subprocess

    code = ("import sys; sys.modules.update(onnx=None, onnxruntime=None, onnxscript=None, tensorrt=None); "
            "import leaps_engine, leaps_engine.export.backends, leaps_engine.evaluation, leaps_engine.cli; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
