"""The ``leaps-engine export`` job: write a model as an ONNX graph or an AOTInductor package.

Part of the CLI (with :mod:`leaps_engine.cli`). The export and its verification against eager are in
:mod:`leaps_engine.export.onnx` and :mod:`leaps_engine.export.aoti`; this module builds the model, reports
progress and the verification figures, and names the written files.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from leaps_engine.config import SynthesisConfig
from leaps_engine.engine.adapters import create_adapter, get_adapter_entry
from leaps_engine.errors import LeapsError
from leaps_engine.export.graph import graph_spec_for, sidecar_path

EXPORT_SUFFIXES = {"onnx": ".onnx", "aoti": ".pt2"}


def run_export(
    *, model_name: str, export_format: str, size: tuple[int, int, int] | None, out: str | None, weights: str | None,
    taps: bool, dtype: str, max_batch: int, opset: int,
) -> None:
    """Run ``leaps-engine export`` with parsed options (see ``leaps-engine export --help``)."""
    entry = get_adapter_entry(model_name)
    size = size or SynthesisConfig.from_preset(model_name).size
    weights = weights or entry.pretrained
    if export_format == "aoti" and dtype != "float32":
        raise LeapsError("--format aoti exports float32 only (the native runner feeds float32 input)")
    adapter = create_adapter(model_name, weights=weights)
    graph = graph_spec_for(adapter, size, taps=taps, dtype=dtype, max_batch=max_batch)
    path = Path(out) if out else Path(f"{model_name}-{'x'.join(map(str, graph.size))}{EXPORT_SUFFIXES[export_format]}")
    if not path.parent.is_dir():
        raise LeapsError(f"cannot write {path}: folder {path.parent} does not exist")

    label = f"{model_name} at {'x'.join(map(str, graph.size))}, {dtype}, batch 1..{max_batch}"
    label += f", {len(graph.taps)} tap means" if graph.taps else ", logits only"
    click.echo(f"exporting {label} ({'ONNX opset ' + str(opset) if export_format == 'onnx' else 'AOTInductor'})",
               err=True)
    started = time.perf_counter()
    if export_format == "onnx":
        from leaps_engine.export.onnx import export_onnx

        description = export_onnx(adapter, graph, path, weights=str(weights), opset=opset)
    else:
        from leaps_engine.export.aoti import export_aoti

        description = export_aoti(adapter, graph, path, weights=str(weights))
    click.echo(f"verified against eager at batch {', '.join(map(str, description['verification']['batches']))} "
               f"({description['verification']['runtime']}):", err=True)
    for name, figures in description["verification"]["outputs"].items():
        click.echo(f"  {name:<8} max abs error {figures['max_abs_error']:.3g}, cosine {figures['cosine']:.6f}", err=True)
    megabytes = path.stat().st_size / 2**20
    click.echo(f"wrote {path} ({megabytes:.1f} MB) and {sidecar_path(path)} in {time.perf_counter() - started:.1f} s")
