"""Export an adapter to ONNX with the dynamo exporter, checked against eager before it is written.

One static graph per model input size (T, H, W), with a dynamic batch; the taps' channel means are
optional extra outputs (the priming features). The file is checked with the ONNX checker, run with ONNX
Runtime on the CPU at two batch sizes and compared with eager torch (:mod:`leaps_engine.export.parity`);
a graph that fails is never written. A JSON sidecar records the input spec, outputs, opset, versions and
the verification figures.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import torch

from leaps_engine._features import package_version, require
from leaps_engine._io import atomic_paths
from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.errors import LeapsError, one_line
from leaps_engine.export.cache import file_sha256, weights_fingerprint
from leaps_engine.export.graph import (
    INPUT_NAME,
    GraphSpec,
    example_input,
    exportable_module,
    sidecar,
    sidecar_path,
)
from leaps_engine.export.parity import VERIFY_BATCHES, verify_against_eager

ONNX_OPSET = 20  # the dynamo exporter's default, and the newest opset TensorRT 10.x parses


def export_onnx(
    adapter: VideoAdapter, graph: GraphSpec, path: str | Path, *, weights: str, opset: int = ONNX_OPSET
) -> dict:
    """Export ``adapter`` as described by ``graph`` to ``path`` (plus ``<path>.json``); return the sidecar.

    Raises :class:`LeapsError` if the exporter fails, the checker rejects the graph, or ONNX Runtime's
    outputs differ from eager (float32: allclose; half precision: cosine >= 0.99). Nothing is left at
    ``path`` in that case.
    """
    onnx = require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    path = Path(path)
    module = exportable_module(adapter, graph)
    example = example_input(graph).to(graph.torch_dtype)
    batch = torch.export.Dim("batch", min=1, max=graph.max_batch)
    try:
        with _quiet():
            program = torch.onnx.export(
                module, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=list(graph.output_names),
                dynamic_shapes={"video": {0: batch}}, opset_version=opset, verbose=False)
    except Exception as error:  # the exporter raises many types; each is a failure to export this model
        raise LeapsError(f"cannot export {adapter.name} to ONNX: {one_line(error)}") from None

    with atomic_paths(path, sidecar_path(path)) as (onnx_tmp, json_tmp):  # the pair appears together
        try:
            program.save(str(onnx_tmp), external_data=False)
        except Exception as error:  # protobuf refuses graphs over 2 GB, among others
            raise LeapsError(f"cannot save the ONNX export of {adapter.name}: {one_line(error)}") from None
        try:
            onnx.checker.check_model(str(onnx_tmp), full_check=True)
        except Exception as error:  # onnx raises ValidationError and others
            raise LeapsError(f"the ONNX checker rejects the export of {adapter.name}: {one_line(error)}") from None
        verification, widths = verify_onnx(adapter, graph, onnx_tmp)
        description = sidecar(adapter, graph, "onnx", weights, weights_fingerprint(adapter), widths)
        description.update({"opset": opset, "onnx": onnx.__version__, "sha256": file_sha256(onnx_tmp),
                            "verification": verification})
        json_tmp.write_text(json.dumps(description, indent=2) + "\n")
    return description


def verify_onnx(adapter: VideoAdapter, graph: GraphSpec, path: str | Path) -> tuple[dict, list[int]]:
    """Run the ONNX file with ONNX Runtime on the CPU at two batch sizes and compare every output with
    eager; return the figures and the output widths, or raise :class:`LeapsError` naming the worst output."""
    ort = require("onnxruntime", "Checking an ONNX export")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises its own exception types
        raise LeapsError(f"ONNX Runtime (CPU) cannot load the {graph.dtype} export of {adapter.name}: "
                         f"{one_line(error)}") from None

    def run(video: torch.Tensor) -> list[torch.Tensor]:
        feed = {INPUT_NAME: video.to(graph.torch_dtype).numpy()}
        return [torch.from_numpy(value) for value in session.run(list(graph.output_names), feed)]

    figures, widths = verify_against_eager(adapter, graph, run, f"the ONNX export of {adapter.name}")
    return {"runtime": f"onnxruntime {package_version('onnxruntime')}", "provider": "CPUExecutionProvider",
            "batches": list(VERIFY_BATCHES), "outputs": figures}, widths


@contextlib.contextmanager
def _quiet():
    """Keep the exporter's progress lines and warnings out of the CLI's output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
