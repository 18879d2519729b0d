"""Export an adapter as an AOTInductor package (``.pt2``): a compiled shared library that the libtorch
runner in ``native/`` loads without Python.

Same graph as the ONNX export (:mod:`leaps_engine.export.graph`): one static (T, H, W), dynamic batch,
optional tap means. The package is loaded back with ``torch._inductor.aoti_load_package`` and compared
with eager at two batch sizes before it is written; a sidecar ``<path>.json`` records what it is.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from leaps_engine._io import atomic_paths
from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.errors import LeapsError, one_line
from leaps_engine.export.cache import file_sha256, weights_fingerprint
from leaps_engine.export.graph import (
    GraphSpec,
    example_input,
    exportable_module,
    sidecar,
    sidecar_path,
)
from leaps_engine.export.parity import VERIFY_BATCHES, verify_against_eager


def export_aoti(adapter: VideoAdapter, graph: GraphSpec, path: str | Path, *, weights: str) -> dict:
    """Compile ``adapter`` ahead of time for the CPU into the package ``path`` (``.pt2``); return the sidecar.

    Raises :class:`LeapsError` if export or compilation fails or the package's outputs differ from eager.
    """
    path = Path(path)
    if path.suffix != ".pt2":
        raise LeapsError(f"an AOTInductor package must end in .pt2, got {path.name}")
    module = exportable_module(adapter, graph)
    example = example_input(graph).to(graph.torch_dtype)
    batch = torch.export.Dim("batch", min=1, max=graph.max_batch)
    with atomic_paths(path, sidecar_path(path)) as (package_tmp, json_tmp):  # the pair appears together
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.export(module, (example,), dynamic_shapes={"video": {0: batch}})
                torch._inductor.aoti_compile_and_package(program, package_path=str(package_tmp))
        except Exception as error:  # export and inductor raise many types; each is a failure to compile
            raise LeapsError(f"cannot compile {adapter.name} with AOTInductor: {one_line(error)}") from None
        verification, widths = verify_aoti(adapter, graph, package_tmp)
        description = sidecar(adapter, graph, "aoti", weights, weights_fingerprint(adapter), widths)
        description.update({"sha256": file_sha256(package_tmp), "verification": verification})
        json_tmp.write_text(json.dumps(description, indent=2) + "\n")
    return description


def verify_aoti(adapter: VideoAdapter, graph: GraphSpec, path: str | Path) -> tuple[dict, list[int]]:
    """Load the package and compare its outputs with eager at two batch sizes; return the figures and
    the output widths, or raise on a mismatch."""
    try:
        runner = torch._inductor.aoti_load_package(str(path))
    except Exception as error:  # inductor raises many types for a package it cannot load
        raise LeapsError(f"cannot load the AOTInductor package of {adapter.name}: {one_line(error)}") from None

    def run(video: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            outputs = runner(video.to(graph.torch_dtype))
        return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]

    figures, widths = verify_against_eager(adapter, graph, run, f"the AOTInductor package of {adapter.name}")
    return {"runtime": f"torch {torch.__version__} aoti_load_package", "batches": list(VERIFY_BATCHES),
            "outputs": figures}, widths
