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

import dataclasses
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.engine.step import AUTOCAST_DTYPES
from leaps_engine.errors import LeapsError, one_line
from leaps_engine.export.cache import (
    artifact_name,
    cache_dir,
    exporter_versions,
    onnx_cache_key,
    weights_fingerprint,
)
from leaps_engine.export.graph import (
    DEFAULT_MAX_BATCH,
    ForwardOutputs,
    GraphSpec,
    graph_spec_for,
    sidecar_path,
)
from leaps_engine.export.onnx import ONNX_OPSET, export_onnx
from leaps_engine.export.parity import compare_outputs, describe_failure, exact_float32

FORWARD_BACKENDS = ("torch", "onnxruntime", "tensorrt")


class ForwardBackend(Protocol):
    """What every forward backend offers (see the module docstring)."""

    name: str
    adapter: VideoAdapter

    def logits(self, video: torch.Tensor) -> torch.Tensor: ...

    def tap_means(self, video: torch.Tensor, taps: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]: ...


def forward_problem(kind: str, device: torch.device, dtype: str | None = None) -> str | None:
    """Why backend ``kind`` cannot run on ``device`` at ``dtype`` here, or ``None``. Only ONNX Runtime on
    CUDA is imported (to list its providers); otherwise nothing is."""
    if kind not in FORWARD_BACKENDS:
        raise LeapsError(f"unknown forward backend {kind!r}; expected one of {', '.join(FORWARD_BACKENDS)}")
    needs = {"onnxruntime": ("onnx", "onnxscript", "onnxruntime"), "tensorrt": ("onnx", "onnxscript", "onnxruntime",
                                                                                 "tensorrt")}.get(kind, ())
    missing = [package for package in needs if importlib.util.find_spec(package) is None]
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
            return "this onnxruntime has no CUDA provider (pip install 'leaps-engine[gpu]', which brings onnxruntime-gpu)"
    return None


class TorchForward:
    """The adapter itself, without gradients."""

    name = "torch"

    def __init__(self, adapter: VideoAdapter, dtype: str | None = None):
        self.adapter = adapter
        self.dtype = dtype or "float32"

    @torch.no_grad()
    def logits(self, video: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.adapter(video).float()

    @torch.no_grad()
    def tap_means(self, video: torch.Tensor, taps: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        with self._autocast():
            logits, values = self.adapter.forward_with_taps(video, taps)
            return logits.float(), [value.float().mean(dim=(2, 3)) for value in values]

    def _autocast(self) -> torch.autocast:
        """Autocast to ``dtype``, off for float32."""
        device_type = next(self.adapter.parameters()).device.type
        return torch.autocast(device_type, dtype=AUTOCAST_DTYPES[self.dtype], enabled=self.dtype != "float32")


class ExportedForward:
    """Base of the backends that run an ONNX export of the adapter.

    Subclasses say how to load an ONNX file (:meth:`load`) and run it (:meth:`execute`); this class
    resizes the input to the model's size, finds or makes the ONNX graph for that size, checks the loaded
    graph against eager on its first input, and splits batches larger than ``max_batch``.
    """

    name = "exported"

    def __init__(self, adapter: VideoAdapter, dtype: str | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                 weights: str = "unknown"):
        self.adapter = adapter
        self.dtype = dtype or ("float16" if next(adapter.parameters()).device.type == "cuda" else "float32")
        self.max_batch = max_batch
        self.weights = weights
        self._fingerprint: str | None = None
        self._runners: dict[GraphSpec, object] = {}

    def onnx_dtype(self) -> str:
        """The dtype of the ONNX graph this backend runs (TensorRT 10.x lowers precision itself)."""
        return self.dtype

    def load(self, path: Path, graph: GraphSpec, description: dict) -> object:
        """Prepare ``path`` (an ONNX file of ``graph``) to run; return what :meth:`execute` takes."""
        raise NotImplementedError

    def execute(self, runner: object, graph: GraphSpec, video: torch.Tensor) -> list[torch.Tensor]:
        """Run one chunk ``[b <= max_batch, 3, T, H, W]`` (model size, adapter device); outputs float32."""
        raise NotImplementedError

    def logits(self, video: torch.Tensor) -> torch.Tensor:
        return self._run(video, ())[0]

    def tap_means(self, video: torch.Tensor, taps: Sequence[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        unknown = [t for t in taps if t not in self.adapter.taps]
        if unknown:
            raise LeapsError(f"{self.adapter.name} has no tap {unknown[0]!r}")
        outputs = self._run(video, self.adapter.taps)  # one graph with every tap serves any subset
        return outputs[0], [outputs[1 + self.adapter.taps.index(t)] for t in taps]

    @torch.no_grad()
    def _run(self, video: torch.Tensor, taps: Sequence[str]) -> list[torch.Tensor]:
        video = self.adapter.fit_input(video).contiguous()
        graph = graph_spec_for(self.adapter, tuple(video.shape[2:]), taps, self.onnx_dtype(), self.max_batch)
        runner = self._runners.get(graph)
        new_graph = runner is None
        if new_graph:
            path, description = self._onnx_file(graph)
            runner = self.load(path, graph, description)
        results = []
        for chunk in video.split(self.max_batch):
            results.append(self.execute(runner, graph, chunk))
            if new_graph:  # checked against eager on its first chunk before it is kept
                self._check_first_use(graph, chunk, results[-1], path)
                self._runners[graph] = runner
                new_graph = False
        return [torch.cat(parts) for parts in zip(*results, strict=True)]

    def _onnx_file(self, graph: GraphSpec) -> tuple[Path, dict]:
        """The cached ONNX file for ``graph`` and its sidecar, exported (and verified) on first need."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.adapter)
        key = onnx_cache_key(self.adapter.name, self._fingerprint, graph.size, graph.taps, graph.dtype, ONNX_OPSET,
                             exporter_versions())
        path = cache_dir("onnx") / artifact_name(self.adapter.name, graph.size, key, ".onnx")
        if not (path.is_file() and sidecar_path(path).is_file()):
            # the ONNX batch dimension has no upper bound: one file serves every max_batch
            export_onnx(self.adapter, dataclasses.replace(graph, max_batch=DEFAULT_MAX_BATCH), path,
                        weights=self.weights)
        try:
            return path, json.loads(sidecar_path(path).read_text())
        except (OSError, ValueError) as error:
            raise LeapsError(f"cannot read {sidecar_path(path)} ({one_line(error)}); delete it to export again") from None

    def _check_first_use(self, graph: GraphSpec, video: torch.Tensor, outputs: list[torch.Tensor], path: Path) -> None:
        """Compare a new graph's ``outputs`` for ``video`` with eager; a mismatch is a :class:`LeapsError`."""
        with exact_float32():
            eager = ForwardOutputs(self.adapter, graph.taps)(video)
        reference = list(eager) if isinstance(eager, tuple) else [eager]
        parities = compare_outputs(graph.output_names, reference, outputs, self.dtype)
        failure = describe_failure(parities, self.dtype)
        if failure:
            raise LeapsError(f"{self.name} backend for {self.adapter.name} at {'x'.join(map(str, graph.size))}: "
                             f"{failure} (graph {path})")


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
        from leaps_engine.export.onnxruntime import OnnxRuntimeForward

        return OnnxRuntimeForward(adapter, dtype=dtype, max_batch=max_batch, weights=weights)
    if kind == "tensorrt":
        from leaps_engine.export.tensorrt import TensorRTForward

        return TensorRTForward(adapter, dtype=dtype, max_batch=max_batch, weights=weights)
    raise LeapsError(f"unknown forward backend {kind!r}; expected one of {', '.join(FORWARD_BACKENDS)}")
