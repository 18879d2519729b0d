"""The TensorRT forward backend.

The precision plans, shape profiles, cache keys and error messages are pure and always tested. Building
and running an engine needs TensorRT and a CUDA device (``pytest -m tensorrt``); those tests are
skipped otherwise, and the ones that need only CUDA are skipped without it.
"""

import copy
import sys
import types

import pytest
import torch

from leaps_engine.errors import LeapsError
from leaps_engine.export import tensorrt as trt_backend
from leaps_engine.export.backends import create_forward_backend
from leaps_engine.export.tensorrt import (
    PrecisionPlan,
    batch_profile,
    engine_file_key,
    parse_version,
    precision_plan,
    timing_cache_name,
    torch_dtype,
)

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")


def _tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


TENSORRT = _tensorrt_available()


def test_parse_version():
    assert parse_version("10.13.0.35") == (10, 13, 0, 35)
    assert parse_version("11.4.0") == (11, 4, 0)
    assert parse_version("11.4.0rc1") == (11, 4, 0)
    assert parse_version("8.6") == (8, 6)
    with pytest.raises(LeapsError, match="cannot read"):
        parse_version("unknown")


@pytest.mark.parametrize(("version", "dtype", "expected"), [
    ("10.13.0", "float32", PrecisionPlan("float32", (), False, ("TF32",))),
    ("10.13.0", "float16", PrecisionPlan("float32", ("FP16",), False, ())),
    ("10.13.0", "bfloat16", PrecisionPlan("float32", ("BF16",), False, ())),
    ("11.4.0", "float32", PrecisionPlan("float32", (), True, ("TF32",))),
    ("11.4.0", "float16", PrecisionPlan("float16", (), True, ())),
])
def test_precision_plan(version, dtype, expected):
    assert precision_plan(version, dtype) == expected


def test_precision_plan_rejects_old_versions_and_unknown_dtypes():
    with pytest.raises(LeapsError, match=r"TensorRT 8\.6 is not supported.*pip install -U 'leaps-engine\[gpu\]'"):
        precision_plan("8.6", "float32")
    with pytest.raises(LeapsError, match="not 'int8'"):
        precision_plan("10.13.0", "int8")
    with pytest.raises(LeapsError, match="strongly typed and builds bfloat16 only from a bfloat16 ONNX"):
        precision_plan("11.4.0", "bfloat16")


def test_batch_profile():
    video = (3, 8, 32, 32)
    assert batch_profile(video, 64) == {"video": ((1, *video), (8, *video), (64, *video))}
    assert batch_profile(video, 6)["video"][1] == (4, *video)  # largest power of two <= max
    assert batch_profile(video, 2)["video"][1] == (2, *video)
    assert batch_profile(video, 1)["video"] == ((1, *video),) * 3
    assert batch_profile(video, 64, opt_batch=32)["video"][1] == (32, *video)


@pytest.mark.parametrize(("max_batch", "opt_batch"), [(0, None), (8, 0), (8, 9)])
def test_batch_profile_rejects_impossible_batches(max_batch, opt_batch):
    with pytest.raises(LeapsError, match="batch"):
        batch_profile((3, 8, 32, 32), max_batch, opt_batch)


BASE_KEY_ARGS = {
    "description": {"model": "embedded", "sha256": "a" * 64},
    "tensorrt_version": "10.13.0.35",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": (9, 0),
    "profile": batch_profile((3, 8, 32, 32), 64),
    "dtype": "float16",
}
KEY_CHANGES = {
    "description": {"model": "embedded", "sha256": "b" * 64},
    "tensorrt_version": "11.4.0.106",
    "gpu_name": "NVIDIA H200",
    "compute_capability": (9, 1),
    "profile": batch_profile((3, 8, 32, 32), 64, opt_batch=16),
    "dtype": "float32",
}


def test_engine_key_is_equal_for_equal_inputs():
    assert engine_file_key(**BASE_KEY_ARGS) == engine_file_key(**copy.deepcopy(BASE_KEY_ARGS))


@pytest.mark.parametrize("changed", list(KEY_CHANGES))
def test_engine_key_changes_with_each_input(changed):
    assert engine_file_key(**{**BASE_KEY_ARGS, changed: KEY_CHANGES[changed]}) != engine_file_key(**BASE_KEY_ARGS)


def test_engine_key_ignores_profile_order():
    first = {"video": ((1, 3), (2, 3), (4, 3)), "mask": ((1, 1), (2, 1), (4, 1))}
    second = dict(reversed(list(first.items())))
    assert engine_file_key(**{**BASE_KEY_ARGS, "profile": first}) == engine_file_key(
        **{**BASE_KEY_ARGS, "profile": second})


def test_engine_key_needs_the_onnx_hash():
    with pytest.raises(LeapsError, match="no sha256"):
        engine_file_key(**{**BASE_KEY_ARGS, "description": {"model": "embedded"}})


def test_timing_cache_name_depends_on_tensorrt_gpu_and_dtype_only():
    name = timing_cache_name("10.13.0.35", "NVIDIA H100 80GB HBM3", (9, 0), "float16")
    assert name == timing_cache_name("10.13.0.35", "NVIDIA H100 80GB HBM3", (9, 0), "float16")
    assert name.startswith("timing-") and name.endswith(".cache")
    assert name != timing_cache_name("10.13.0.35", "NVIDIA H100 80GB HBM3", (9, 0), "float32")
    assert name != timing_cache_name("11.4.0.106", "NVIDIA H100 80GB HBM3", (9, 0), "float16")


def test_torch_dtype():
    assert torch_dtype("FLOAT") is torch.float32
    assert torch_dtype("HALF") is torch.float16
    assert torch_dtype("BF16") is torch.bfloat16
    with pytest.raises(LeapsError, match="cannot bind a INT8"):
        torch_dtype("INT8")


def test_backend_on_cpu_says_it_needs_cuda(model):
    with pytest.raises(LeapsError) as error:
        create_forward_backend("tensorrt", model)
    message = str(error.value)
    assert "needs a CUDA device" in message and "onnxruntime or torch" in message
    assert "\n" not in message


@pytest.fixture(scope="module")
def cuda_model():
    from leaps_engine.engine.adapters import create_adapter

    return create_adapter("embedded", device="cuda")


@pytest.mark.gpu
@needs_cuda
def test_backend_without_tensorrt_says_what_to_install(cuda_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(LeapsError) as error:
        create_forward_backend("tensorrt", cuda_model)
    message = str(error.value)
    assert "needs the tensorrt package: pip install tensorrt" in message
    assert "\n" not in message


@pytest.mark.gpu
@needs_cuda
def test_backend_rejects_old_tensorrt(cuda_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(LeapsError, match="TensorRT 8.6.1 is not supported"):
        create_forward_backend("tensorrt", cuda_model)


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory):
    """A fresh cache folder for the ONNX exports and engines of this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEAPS_ENGINE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def ieee_float32():
    """cuDNN's default TF32 convolutions would make the eager reference itself inexact at float32."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.tensorrt
@pytest.mark.skipif(not (TENSORRT and CUDA), reason="needs TensorRT and a CUDA device")
def test_engine_matches_torch_and_is_reused(cuda_model, engine_cache, ieee_float32, monkeypatch):
    from leaps_engine.export.cache import cache_dir

    video = torch.randn(3, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0)).cuda()
    backend = create_forward_backend("tensorrt", cuda_model, dtype="float32", max_batch=4)
    logits = backend.logits(video)  # builds the engine and checks it against eager on first use
    with torch.no_grad():
        expected = cuda_model(video).float()
    torch.testing.assert_close(logits, expected, rtol=1e-3, atol=1e-3)

    engines = list(cache_dir("tensorrt").glob("*.engine"))
    assert len(engines) == 1
    built_at = engines[0].stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("the cached engine should have been loaded")

    monkeypatch.setattr(trt_backend, "build_engine", no_build)
    again = create_forward_backend("tensorrt", cuda_model, dtype="float32", max_batch=4)
    torch.testing.assert_close(again.logits(video), logits)
    assert engines[0].stat().st_mtime_ns == built_at
    assert list(cache_dir("tensorrt").glob("*.engine")) == engines
