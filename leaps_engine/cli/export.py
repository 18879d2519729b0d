"""``leaps-engine export``: write a model as an ONNX graph or an AOTInductor package.

The export and its verification against eager are in :mod:`leaps_engine.export.onnx` and
:mod:`leaps_engine.export.aoti`; this command builds the model, reports progress and the verification
figures, and names the written files.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from leaps_engine.cli.console import user_errors
from leaps_engine.cli.options import EMBEDDED_MODEL, size_option, threads_option, weights_option
from leaps_engine.config import EXPORT_DTYPES, EXPORT_FORMATS


@click.command()
@click.argument("model_name", default=EMBEDDED_MODEL, metavar="[MODEL]")
@click.option("--format", "export_format", type=click.Choice(EXPORT_FORMATS), default="onnx", show_default=True,
              help="onnx (dynamo exporter, for ONNX Runtime and TensorRT) or aoti (an AOTInductor .pt2 package for "
                   "the native runner).")
@size_option("Video size; the graph takes the model's input size for it (default: the preset's size).")
@click.option("--out", default=None, type=click.Path(), help="File to write (default: MODEL-TxHxW.onnx or .pt2).")
@weights_option()
@click.option("--taps/--no-taps", default=False, show_default=True,
              help="Also output every tap's channel means [B, C] (the priming features) as tap0, tap1, ...")
@click.option("--dtype", type=click.Choice(EXPORT_DTYPES), default="float32", show_default=True,
              help="Precision of the exported graph (ONNX; float16 is checked by cosine >= 0.99).")
@click.option("--max-batch", type=click.IntRange(min=2), default=64, show_default=True,
              help="Largest batch the graph accepts (the batch is dynamic from 1).")
@click.option("--opset", type=click.IntRange(min=18), default=20, show_default=True, help="ONNX opset.")
@threads_option
def export(**options: object) -> None:
    """Export MODEL (default: the embedded model) as one static graph per size with a dynamic batch.

    The graph is checked against eager torch (ONNX: the ONNX checker, then ONNX Runtime on the CPU; AOTI: the
    loaded package) at batch 2 and 1, and is not written if any output differs (float32: allclose; half
    precision: cosine < 0.99). A JSON sidecar (OUT.json) records the input spec, outputs, versions and figures.

    Packages: pip install 'leaps-engine[export]' for ONNX export and ONNX Runtime on the CPU;
    pip install 'leaps-engine[gpu]' on CUDA machines for onnxruntime-gpu and TensorRT (never both: the two
    ONNX Runtime builds install the same module).
    """
    with user_errors():
        run_export(**options)


EXPORT_SUFFIXES = {"onnx": ".onnx", "aoti": ".pt2"}


def run_export(
    *, model_name: str, export_format: str, size: tuple[int, int, int] | None, out: str | None, weights: str | None,
    taps: bool, dtype: str, max_batch: int, opset: int,
) -> None:
    """Run ``leaps-engine export`` with parsed options (see ``leaps-engine export --help``)."""
    from leaps_engine.config import SynthesisConfig
    from leaps_engine.engine.adapters import create_adapter, get_adapter_entry
    from leaps_engine.errors import LeapsError
    from leaps_engine.export.graph import graph_spec_for, sidecar_path

    get_adapter_entry(model_name)  # an unknown name fails before any work
    size = size or SynthesisConfig.from_preset(model_name).size
    if export_format == "aoti" and dtype != "float32":
        raise LeapsError("--format aoti exports float32 only (the native runner feeds float32 input)")
    adapter = create_adapter(model_name, weights=weights)
    weights = adapter.weights
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
        click.echo(f"  {name:<8} max abs error {figures['max_abs_error']:.3g}, cosine {figures['cosine']:.6f}",
                   err=True)
    megabytes = path.stat().st_size / 2**20
    click.echo(f"wrote {path} ({megabytes:.1f} MB) and {sidecar_path(path)} in {time.perf_counter() - started:.1f} s")
