"""The base of the forward backends that run an ONNX export of an adapter (ONNX Runtime, TensorRT).

See :mod:`leaps_engine.engine.forward` for the interface and :mod:`leaps_engine.export.backends` for the
factory.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from leaps_engine.engine.adapters.base import VideoAdapter
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
            raise LeapsError(f"cannot read {sidecar_path(path)} ({one_line(error)}); delete it to export "
                             "again") from None

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
