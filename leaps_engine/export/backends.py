"""Forward backends: one interface for every forward-only pass of an adapter.

``create_forward_backend(kind, adapter)`` gives an object with

* ``logits(video) -> [B, K]`` and
* ``tap_means(video, taps) -> (logits [B, K], [per tap: channel means [B, C]])``

for a normalised video ``[B, 3, T, H, W]`` on the adapter's device, float32 out. ``torch`` runs the
adapter itself. ``onnxruntime`` and ``tensorrt`` run an ONNX export of it (made once per model input size
and outputs, then reused from the on-disk cache), and compare their outputs with eager torch the first
time each graph is used by the backend object; a mismatch raises :class:`LeapsError`.

Synthesis needs input gradients and always runs in torch; these backends serve stimulus features,
scoring (``evaluate``) and the forward column of ``bench``.
"""

from __future__ import annotations

import torch

from leaps_engine._features import has
from leaps_engine.config import FORWARD_BACKENDS
from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.engine.forward import ForwardBackend, TorchForward
from leaps_engine.errors import LeapsError
from leaps_engine.export.graph import (
    DEFAULT_MAX_BATCH,
)
from leaps_engine.export.onnxruntime import OnnxRuntimeForward
from leaps_engine.export.tensorrt import TensorRTForward


def forward_problem(kind: str, device: torch.device, dtype: str | None = None) -> str | None:
    """Why backend ``kind`` cannot run on ``device`` at ``dtype`` here, or ``None``. Only ONNX Runtime on
    CUDA is imported (to list its providers); otherwise nothing is."""
    if kind not in FORWARD_BACKENDS:
        raise LeapsError(f"unknown forward backend {kind!r}; expected one of {', '.join(FORWARD_BACKENDS)}")
    needs = {"onnxruntime": ("onnx", "onnxscript", "onnxruntime"), "tensorrt": ("onnx", "onnxscript", "onnxruntime",
                                                                                 "tensorrt")}.get(kind, ())
    missing = [package for package in needs if not has(package)]
    if missing:
        extra = "gpu" if kind == "tensorrt" or device.type == "cuda" else "export"
        return f"{', '.join(missing)} not installed (pip install 'leaps-engine[{extra}]')"
    if kind == "tensorrt" and device.type != "cuda":
        return "TensorRT needs a CUDA device"
    if kind == "onnxruntime" and dtype == "bfloat16":
        return "the onnxruntime backend runs float32 or float16"
    if kind == "onnxruntime" and device.type == "cuda":
        import onnxruntime

        if not set(onnxruntime.get_available_providers()) & {"CUDAExecutionProvider", "TensorrtExecutionProvider"}:
            return ("this onnxruntime has no CUDA provider (pip install 'leaps-engine[gpu]', which brings "
                    "onnxruntime-gpu)")
    return None


def create_forward_backend(
    kind: str, adapter: VideoAdapter, *, dtype: str | None = None, max_batch: int = DEFAULT_MAX_BATCH,
    weights: str = "unknown",
) -> ForwardBackend:
    """The ``kind`` backend (one of :data:`FORWARD_BACKENDS`) for ``adapter``.

    ``dtype`` is the precision (default: float32 for torch and on the CPU, float16 for the exported
    backends on CUDA); ``weights`` labels the ONNX sidecar. A backend whose package is missing raises
    :class:`LeapsError` saying what to install.
    """
    if kind == "torch":
        return TorchForward(adapter, dtype)
    if kind == "onnxruntime":
        return OnnxRuntimeForward(adapter, dtype=dtype, max_batch=max_batch, weights=weights)
    if kind == "tensorrt":
        return TensorRTForward(adapter, dtype=dtype, max_batch=max_batch, weights=weights)
    raise LeapsError(f"unknown forward backend {kind!r}; expected one of {', '.join(FORWARD_BACKENDS)}")
