"""Shared pytest setup.

Without a CUDA device the Triton kernels run through Triton's CPU interpreter. Triton reads
``TRITON_INTERPRET`` when a kernel is decorated (on import of ``leaps_engine.kernels``), so this has
to be set before any test module imports ``leaps_engine``; an explicit setting is kept.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
