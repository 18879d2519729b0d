"""Shared pytest setup.

Without a CUDA device the Triton kernels run through Triton's CPU interpreter. Triton reads
``TRITON_INTERPRET`` when a kernel is decorated (on import of ``leaps_engine.kernels``), so this has
to be set before any test module imports ``leaps_engine``; an explicit setting is kept. The shared
``model`` and ``verifier`` fixtures import it lazily for the same reason.
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
