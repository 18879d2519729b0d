"""Shared pytest setup.

Without a CUDA device the Triton kernels run through Triton's CPU interpreter. Triton reads
``TRITON_INTERPRET`` when a kernel is decorated (on import of ``leaps_engine.kernels``), so this has
to be set before any test module imports ``leaps_engine``; an explicit setting is kept. The shared
``model`` and ``verifier`` fixtures import it lazily for the same reason. Exported graphs and engines are
cached in a folder of the test session, never in the user's cache.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="module")
def model():
    """The embedded classifier, one per test module."""
    from leaps_engine import create_adapter

    return create_adapter("embedded")


@pytest.fixture(scope="module")
def verifier():
    """The embedded verifier, one per test module."""
    from leaps_engine import create_adapter

    return create_adapter("embedded_verifier")


@pytest.fixture(scope="module")
def cuda_model():
    """The embedded classifier on CUDA (the test is skipped without a CUDA device)."""
    from leaps_engine import create_adapter

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return create_adapter("embedded", device="cuda")


@pytest.fixture(scope="module")
def cuda_verifier():
    """The embedded verifier on CUDA (the test is skipped without a CUDA device)."""
    from leaps_engine import create_adapter

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return create_adapter("embedded_verifier", device="cuda")


@pytest.fixture(scope="module")
def ieee_float32_convolutions():
    """cuDNN convolutions without TF32 for the module (float32 comparisons between eager and compiled
    layouts differ by ~1e-3 with TF32)."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory):
    """Point ``LEAPS_ENGINE_CACHE`` at a folder of this session (one ONNX export per graph for all tests)."""
    folder = tmp_path_factory.mktemp("leaps-engine-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEAPS_ENGINE_CACHE", str(folder))
        yield folder
