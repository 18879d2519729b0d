"""On-disk caches of exported graphs and TensorRT engines, and the keys that name their files.

Every key is a pure function of what makes an artifact valid: an ONNX graph depends on the model, its
weights, the input size, the exported outputs, the dtype, the opset and the torch version; a TensorRT
engine on the ONNX file, the TensorRT version, the GPU and the shape profile. A changed input gives a
new file name, so a stale artifact is never loaded.

The cache folder is ``$LEAPS_ENGINE_CACHE`` if set, else ``$XDG_CACHE_HOME/leaps-engine``, else
``~/.cache/leaps-engine``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from leaps_engine._features import package_versions
from leaps_engine.errors import LeapsError

CACHE_ENV = "LEAPS_ENGINE_CACHE"
HASH_CHUNK = 1 << 20


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cached artifact (``onnx``, ``tensorrt``), created if missing."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "leaps-engine")
    folder = Path(root) / kind
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LeapsError(f"cannot create the cache folder {folder} ({error.strerror or error}); "
                         f"set {CACHE_ENV}") from None
    return folder


def digest(payload: object) -> str:
    """SHA-256 (hex) of a JSON-serialisable value, with sorted keys so equal values give equal keys."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 (hex) over the names, shapes, dtypes and bytes of a module's parameters and buffers."""
    sha = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        sha.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        sha.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def onnx_cache_key(
    model: str, weights: str, size: tuple[int, int, int], taps: tuple[str, ...], dtype: str, opset: int,
    versions: dict[str, str],
) -> str:
    """Key of an exported ONNX graph: model name, weights fingerprint, model input size (T, H, W), the
    taps whose channel means are extra outputs (empty for logits only), dtype, opset, and the versions of
    what writes the graph (leaps-engine, torch, onnx, onnxscript)."""
    return digest({"model": model, "weights": weights, "size": list(size), "taps": list(taps), "dtype": dtype,
                   "opset": opset, "versions": versions})


def exporter_versions() -> dict[str, str]:
    """Versions of the packages that shape an exported graph ("missing" for one not installed)."""
    return package_versions(("leaps-engine", "torch", "onnx", "onnxscript"), missing="missing")


def engine_cache_key(
    onnx_sha256: str, tensorrt_version: str, gpu_name: str, compute_capability: tuple[int, int],
    profile: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]], dtype: str,
) -> str:
    """Key of a TensorRT engine: the ONNX file's hash, the TensorRT version, the GPU's name and compute
    capability, the optimisation profile (input name -> (min, opt, max) shapes) and the dtype.

    Engines are not portable across TensorRT versions or GPU architectures, so each is part of the key.
    """
    shapes = {name: [list(shape) for shape in bounds] for name, bounds in sorted(profile.items())}
    return digest({"onnx": onnx_sha256, "tensorrt": tensorrt_version, "gpu": gpu_name,
                   "sm": list(compute_capability), "profile": shapes, "dtype": dtype})


def artifact_name(prefix: str, size: tuple[int, int, int], key: str, suffix: str) -> str:
    """A readable cache file name, e.g. ``r3d_18-8x112x112-3f2a9c1b04d7e6a5.onnx``."""
    return f"{prefix}-{'x'.join(map(str, size))}-{key[:16]}{suffix}"
