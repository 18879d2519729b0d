"""The ``leaps-engine`` command line: the only place that prints or writes files.

Problems with the user's input end with one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import warnings
from collections.abc import Iterator

import click

from leaps_engine._io import signals_interrupt
from leaps_engine.errors import LeapsError

EMBEDDED_MODEL = "embedded"


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn :class:`LeapsError` into one line and exit 2; show warnings as one ``warning:`` line each; end
    on Ctrl-C, SIGTERM or SIGHUP with one line and exit 128 + the signal's number."""

    def show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        click.echo(f"warning: {message}", err=True)

    previous = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        with signals_interrupt():  # SIGTERM and SIGHUP end a run like Ctrl-C: nothing half-written stays
            yield
    except LeapsError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)
        click.echo(f"error: interrupted ({signal.Signals(signum).name})", err=True)
        sys.exit(128 + signum)
    finally:
        warnings.showwarning = previous


def _parse_size(value: str | None) -> tuple[int, int, int] | None:
    if value is None:
        return None
    parts = value.lower().split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise LeapsError(f"--size must look like TxHxW (e.g. 8x224x224), got {value!r}")
    return tuple(int(p) for p in parts)


def _parse_snapshots(value: str | None) -> list[int]:
    if not value:
        return []
    try:
        steps = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise LeapsError(f"--snapshots must be comma-separated step numbers, got {value!r}") from None
    if any(step < 1 for step in steps):
        raise LeapsError(f"--snapshots steps must be >= 1, got {value!r}")
    return steps


def _threads_option(command):
    """``--threads N``: torch's CPU threads for the command, set before it starts (default: torch's own choice)."""

    def set_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
        if value is not None:
            import torch

            torch.set_num_threads(value)
        return value

    return click.option(
        "--threads", type=click.IntRange(min=1), default=None, expose_value=False, callback=set_threads,
        help="CPU threads torch uses (default: torch's choice, one per core). Results depend on it (float sums "
             "in another order): the same seed gives the same video for the same thread count. On a shared or "
             "busy CPU, 1 or the cores that are free can be many times faster.")(command)


class _Commands(click.Group):
    """The command group; a usage error (an unknown option, a value out of range) is one ``error:`` line
    with exit status 2, like every other bad input, instead of click's three-line usage message."""

    def main(self, *args: object, **kwargs: object) -> object:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.ctx.get_help())
            sys.exit(0)
        except click.ClickException as error:
            click.echo(f"error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except click.exceptions.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leaps-engine")
def main() -> None:
    """Synthesize videos that show what a video classifier has learned (LEAPS, ICCV 2023)."""


@main.command()
@click.option("--model", "model_name", default=EMBEDDED_MODEL, show_default=True,
              help="Model to invert (see `leaps-engine models`).")
@click.option("--weights", default=None,
              help="Model weights: its pretrained name (the default: 'kinetics400', or 'embedded' for the "
                   "embedded models), 'random', or a local checkpoint file.")
@click.option("--class", "classes", multiple=True, metavar="NAME|INDEX",
              help="Target class; repeat for a batch. Default: the first class (embedded model only).")
@click.option("--stimulus", "stimuli", multiple=True, type=click.Path(), metavar="PATH",
              help="Stimulus of the matching --class: a video (mp4, avi, webm, mkv, mov, gif), a folder of frames "
                   "or a saved tensor. Repeat once per --class; with one --class, several prime it together "
                   "(as does a folder of videos). The embedded model generates one if omitted.")
@click.option("--steps", type=int, default=None, help="Optimisation steps (default: the model's preset).")
@click.option("--size", default=None, metavar="TxHxW", help="Size of the synthesized video (default: preset).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first video (video i: seed+i).")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda:0.")
@click.option("--out", "out_dir", type=click.Path(), default="leaps-output", show_default=True,
              help="Output folder (created if missing; files in it are replaced).")
@click.option("--lambda-first", type=float, default=None, help="Priming weight of the first tap (preset).")
@click.option("--lambda-last", type=float, default=None, help="Priming weight of the last tap (preset).")
@click.option("--r", "r", type=float, default=None, help="Regulariser scale r in CE + L_prim + r(R_coh + R_feat).")
@click.option("--distance", type=click.Choice(["jvs", "cos", "l1", "l2"]), default=None,
              help="Priming distance (default jvs).")
@click.option("--priming-layers", type=float, default=None, metavar="FRACTION",
              help="Share of the taps, first ones first, used for priming (default 1.0: all).")
@click.option("--method", type=click.Choice(["leaps", "deepdream", "am"]), default=None,
              help="leaps (default), or a Table 1 baseline without priming: deepdream (CE + TV + L2) or am "
                   "(activation maximisation: the target logit, with L2 decay).")
@click.option("--objective", type=click.Choice(["full", "prim", "prim+coh", "prim+feat"]), default=None,
              help="LEAPS terms (Table 3 ablation): full (default) = CE + L_prim + r(R_coh + R_feat).")
@click.option("--verifier", "verifier_name", default=None,
              help="Verifier for R_feat (default: the preset's, x3d_s for Kinetics models); 'none' drops R_feat.")
@click.option("--verifier-weights", default=None,
              help="Verifier weights (default: the model's weights kind: pretrained, or 'random' with --weights random).")
@click.option("--snapshots", default=None, metavar="STEPS",
              help="Also save the videos at these steps, e.g. 100,500,2000 (paper Fig. 8).")
@click.option("--fps", type=int, default=5, show_default=True, help="Frame rate of the written videos.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
              show_default=True, help="Network precision (auto: bfloat16 on CUDA, float32 on CPU); losses stay float32.")
@click.option("--channels-last", is_flag=True, help="Run the networks on channels-last (NDHWC) tensors.")
@click.option("--compile", "compile_step", is_flag=True,
              help="torch.compile the whole step (one compile per shape; its time is reported separately).")
@click.option("--cuda-graphs", is_flag=True, help="Capture the compiled step in CUDA graphs (CUDA only; implies --compile).")
@click.option("--kernels", type=click.Choice(["auto", "triton", "compile", "eager"]), default="auto", show_default=True,
              help="JVS priming and BN-statistics loss kernels: auto tries triton (CUDA), then compile, then eager.")
@click.option("--forward-backend", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="torch",
              show_default=True, help="Backend of the forward-only pass over the stimuli (their priming features): torch, or an ONNX "
                   "export run by onnxruntime or tensorrt (float16 on CUDA), checked against torch on first use.")
@_threads_option
def synthesize(**options: object) -> None:
    """Synthesize one video per target class by inverting a model primed with a stimulus.

    Writes to --out: result.json (config, versions, per-step losses, final scores) and, per clip,
    video.mp4, video.gif, contact_sheet.png (stimulus row above the synthesized row) and video.pt.
    """
    from leaps_engine.cli_synthesize import run_synthesis

    with _user_errors():
        options["size"] = _parse_size(options["size"])
        options["snapshots"] = _parse_snapshots(options["snapshots"])
        run_synthesis(**options)


@main.command()
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Model to time; repeat for several (default: the embedded model).")
@click.option("--size", "sizes", multiple=True, metavar="TxHxW",
              help="Size of x*; repeat (default: 8x182x182, 8x224x224, 16x224x224, as the paper's Table 4).")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["reference", "eager", "compiled", "fused", "cuda-graphs"]),
              help="Step implementation; repeat (default: all five, or none when only --forward-backend is given; "
                   "fused and cuda-graphs need CUDA).")
@click.option("--forward-backend", "forward_backends", multiple=True,
              type=click.Choice(["torch", "onnxruntime", "tensorrt"]),
              help="Also time forward-only passes (logits, no gradients) with this backend; repeat (e.g. torch and "
                   "onnxruntime). Rows a backend cannot run here are marked skipped.")
@click.option("--batch", type=int, default=1, show_default=True, help="Videos per step.")
@click.option("--iters", type=int, default=20, show_default=True, help="Timed iterations per row.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed iterations first (compilation included).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
              show_default=True, help="Precision of the lean backends (auto: bfloat16 on CUDA, float32 on CPU).")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda:0.")
@click.option("--weights", default="default", show_default=True,
              help="Weights of the timed models: 'default' (random, or the embedded models' own), 'random', "
                   "a pretrained name or a checkpoint file.")
@click.option("--verifier", "verifier_choice", type=click.Choice(["self", "preset", "none"]), default="self",
              show_default=True,
              help="R_feat network: the model itself when it has BatchNorm3d layers (as the authors' code), else the "
                   "preset's; 'preset' always the preset's; 'none' drops R_feat.")
@click.option("--format", "output_format", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True)
@click.option("--out", default=None, type=click.Path(), help="Also write the table to this file.")
@_threads_option
def bench(**options: object) -> None:
    """Time forward, backprop and whole steps of the synthesis loop (the paper's Table 4), per backend.

    Backends: reference (like the authors' code: eager, weight gradients on, hooks, the verifier as a second
    pass, float16 autocast on CUDA), eager (the lean step), compiled (lean + torch.compile), fused (compiled
    + Triton loss kernels), cuda-graphs (fused, captured in CUDA graphs). --forward-backend adds forward-only rows (logits without gradients: torch,
    onnxruntime, tensorrt) in a table of their own. `--format json` prints one object per row with model,
    resolution, batch, backend, dtype, forward_ms, backward_ms, step_ms, peak_mem_mb (medians) and forward_only.
    """
    from leaps_engine.cli_bench import run_bench
    from leaps_engine.cli_synthesize import check_device
    from leaps_engine.engine.latency import BENCH_BACKENDS, TABLE4_SIZES

    with _user_errors():
        options["models"] = options["models"] or (EMBEDDED_MODEL,)
        options["sizes"] = [_parse_size(size) for size in options["sizes"]] or list(TABLE4_SIZES)
        options["backends"] = options["backends"] or (() if options["forward_backends"] else BENCH_BACKENDS)
        options["device"] = check_device(options["device"])
        run_bench(**options)


@main.command()
@click.option("--model", "model_name", default=EMBEDDED_MODEL, show_default=True, help="Model to tune.")
@click.option("--weights", default=None, help="Model weights, as in synthesize.")
@click.option("--class", "classes", multiple=True, metavar="NAME|INDEX",
              help="Target class; repeat (default for the embedded model: every class).")
@click.option("--stimulus", "stimuli", multiple=True, type=click.Path(), metavar="PATH",
              help="Stimulus of the matching --class, as in synthesize (the embedded model generates them).")
@click.option("--steps", type=int, default=None, help="Steps per setting (default: half the preset's, as the paper's 1K).")
@click.option("--size", default=None, metavar="TxHxW", help="Size of x* (default: the preset's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the videos and generated stimuli.")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda:0.")
@click.option("--verifier", "verifier_name", default=None, help="The network that scores each setting (preset's).")
@click.option("--verifier-weights", default=None, help="Verifier weights, as in synthesize.")
@click.option("--lambda-first", type=float, multiple=True, help="Grid values of lambda_1 (default 0.5 ... 1.0).")
@click.option("--lambda-last", type=float, multiple=True, help="Grid values of lambda_L (default 0.1 ... 0.5).")
@click.option("--r", "r", type=float, multiple=True, help="Grid values of r (default 1e-3 ... 1e-2).")
@click.option("--out", "out_dir", type=click.Path(), default="leaps-tune", show_default=True,
              help="Folder for tune.json and tune.md.")
@_threads_option
def tune(**options: object) -> None:
    """Grid-search lambda_1, lambda_L and r (paper Supp. S2), scoring each setting on the verifier.

    Every setting synthesizes the same targets; the winner has the highest verifier top-1 (then verifier
    target probability, then model top-1). Writes the whole grid and the winner to --out.
    """
    from leaps_engine.cli_synthesize import check_device
    from leaps_engine.cli_tune import run_tune

    with _user_errors():
        options["size"] = _parse_size(options["size"])
        options["device"] = check_device(options["device"])
        run_tune(**options)


@main.command()
@click.argument("model_name", default=EMBEDDED_MODEL, metavar="[MODEL]")
@click.option("--format", "export_format", type=click.Choice(["onnx", "aoti"]), default="onnx", show_default=True,
              help="onnx (dynamo exporter, for ONNX Runtime and TensorRT) or aoti (an AOTInductor .pt2 package for "
                   "the native runner).")
@click.option("--size", default=None, metavar="TxHxW",
              help="Video size; the graph takes the model's input size for it (default: the preset's size).")
@click.option("--out", default=None, type=click.Path(), help="File to write (default: MODEL-TxHxW.onnx or .pt2).")
@click.option("--weights", default=None, help="Model weights, as in synthesize.")
@click.option("--taps/--no-taps", default=False, show_default=True,
              help="Also output every tap's channel means [B, C] (the priming features) as tap0, tap1, ...")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Precision of the exported graph (ONNX; float16 is checked by cosine >= 0.99).")
@click.option("--max-batch", type=click.IntRange(min=2), default=64, show_default=True,
              help="Largest batch the graph accepts (the batch is dynamic from 1).")
@click.option("--opset", type=click.IntRange(min=18), default=20, show_default=True, help="ONNX opset.")
@_threads_option
def export(**options: object) -> None:
    """Export MODEL (default: the embedded model) as one static graph per size with a dynamic batch.

    The graph is checked against eager torch (ONNX: the ONNX checker, then ONNX Runtime on the CPU; AOTI: the
    loaded package) at batch 2 and 1, and is not written if any output differs (float32: allclose; half
    precision: cosine < 0.99). A JSON sidecar (OUT.json) records the input spec, outputs, versions and figures.

    Packages: pip install 'leaps-engine[export]' for ONNX export and ONNX Runtime on the CPU;
    pip install 'leaps-engine[gpu]' on CUDA machines for onnxruntime-gpu and TensorRT (never both: the two
    ONNX Runtime builds install the same module).
    """
    from leaps_engine.cli_export import run_export

    with _user_errors():
        options["size"] = _parse_size(options["size"])
        run_export(**options)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(), metavar="PATH...")
@click.option("--evaluator", default=None, metavar="NAME",
              help="Also score every clip with this network (any of `leaps-engine models`, e.g. x3d_m).")
@click.option("--evaluator-weights", default=None, help="Evaluator weights (default: its pretrained weights).")
@click.option("--device", default="cpu", show_default=True, help="Torch device, e.g. cpu or cuda:0.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Clips per forward pass.")
@click.option("--splits", type=click.IntRange(min=1), default=10, show_default=True,
              help="Inception Score splits (each holds at least as many videos as there are classes).")
@click.option("--format", "output_format", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True)
@click.option("--out", default=None, type=click.Path(), help="Also write the table to this file.")
@click.option("--forward-backend", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="torch",
              show_default=True, help="Backend that runs the scoring networks: torch, or an ONNX export run by onnxruntime or "
                   "tensorrt (float16 on CUDA), checked against torch on first use.")
@click.option("--group-by", default="model,method,objective,distance,priming_layers,verifier", metavar="KEYS",
              help="Comma-separated result.json keys to group runs by: model, verifier or any config field "
                   "(default: model, method, objective, distance, priming_layers, verifier).")
@_threads_option
def evaluate(**options: object) -> None:
    """Score the videos of result folders and compare settings (accuracy, Inception Score, frame PSNR/SSIM).

    Each PATH is a result folder of `leaps-engine synthesize`, a folder searched recursively for result.json
    files, or a manifest (.txt, one path a line; .json, a list of paths). Every clip is re-scored by its run's
    model and verifier, and by --evaluator if given; runs are grouped by --group-by. `--format json` prints
    one object per group with the group keys, n_videos, top1_/top5_ model/verifier/evaluator (percent),
    inception_score_* {mean, std}, and psnr/ssim of the synthesized videos and of their stimuli.
    """
    import shlex

    from leaps_engine.cli_evaluate import run_evaluate

    with _user_errors():
        run_evaluate(**options, command=shlex.join(["leaps-engine", *sys.argv[1:]]))


@main.command()
@click.argument("pattern", default="*")
def models(pattern: str) -> None:
    """List registered models (fnmatch PATTERN) with their input specs."""
    from leaps_engine.engine.adapters import get_adapter_entry, list_adapters

    with _user_errors():
        names = list_adapters(pattern)
        if not names:
            raise LeapsError(f"no model matches {pattern!r}")
        width = max(len(name) for name in names) + 2
        click.echo(f"{'name':<{width}}{'family':<14}{'frames x rate':<15}{'crop':<6}{'size':<7}{'classes':<9}weights")
        for name in names:
            entry = get_adapter_entry(name)
            spec = entry.spec
            clip = f"{spec.frames} x {spec.sampling_rate}"
            size = "fixed" if spec.fixed_size else "any"
            click.echo(f"{name:<{width}}{entry.family:<14}{clip:<15}{spec.crop_size:<6}{size:<7}"
                       f"{spec.num_classes:<9}{entry.pretrained}")
        click.echo("\nsize 'fixed': x* is resized to frames x crop x crop; 'any': any size above the model's "
                   "minimum. Taps and presets: `leaps-engine layers MODEL`.")


@main.command()
@click.argument("model_name", metavar="MODEL")
@click.option("--size", default=None, metavar="TxHxW", help="Size of x* (default: the preset's, as synthesize).")
@click.option("--shapes", is_flag=True, help="Also print each tap's shape [C, T', N] at that size.")
def layers(model_name: str, size: str | None, shapes: bool) -> None:
    """List the priming taps of MODEL in forward order, their lambda, and the coherence tap at --size.

    The coherence tap is the deepest tap with at least two frames at the size the model sees (the last
    tap whenever it qualifies); finding it runs the model once on a zero video of that size.
    """
    from leaps_engine.config import preset_for
    from leaps_engine.engine.adapters import create_adapter
    from leaps_engine.engine.objectives import priming_weights
    from leaps_engine.engine.step import coherence_tap

    with _user_errors():
        preset = preset_for(model_name)
        run_size = _parse_size(size) or preset.size
        if min(run_size) < 1:
            raise LeapsError(f"--size must be three positive integers, got {size}")
        adapter = create_adapter(model_name, weights="random")
        weights = priming_weights(len(adapter.taps), preset.lambda_first, preset.lambda_last)
        tap_shapes = adapter.tap_shapes(run_size)
        coherence = coherence_tap(adapter, run_size)
        seen = adapter.spec.model_size(*run_size)
        click.echo(f"{model_name}: {len(adapter.taps)} taps; lambda from {preset.lambda_first} to "
                   f"{preset.lambda_last} ({preset.source}); x* {'x'.join(map(str, run_size))}, seen as "
                   f"{'x'.join(map(str, seen))}")
        for index, (tap, weight) in enumerate(zip(adapter.taps, weights, strict=True), start=1):
            shape = f"  [C, T', N] = {list(tap_shapes[tap])}" if shapes else ""
            role = "  (coherence)" if tap == coherence else ""
            click.echo(f"{index:>3}  {tap:<40} lambda={weight:.3f}{shape}{role}")


@main.command()
@click.argument("model_name", metavar="MODEL")
def classes(model_name: str) -> None:
    """List the class indices and names of MODEL."""
    from leaps_engine.engine.adapters import get_adapter_entry

    with _user_errors():
        for index, name in enumerate(get_adapter_entry(model_name).spec.class_names):
            click.echo(f"{index:>4}  {name}")


@main.group()
def sweep() -> None:
    """Many synthesis jobs from a manifest: plan one, run it (here or on a Ray cluster), report on it.

    A manifest (.csv or .jsonl) holds one job per row: class (required), model, weights, stimulus (paths
    joined by '|'), seed, steps, size, method, objective, distance, priming_layers, lambda_first,
    lambda_last, r, verifier, verifier_weights; an empty cell takes the preset's value.
    """


@sweep.command("plan")
@click.argument("stimuli_root", type=click.Path(), metavar="STIMULI")
@click.option("--out", required=True, type=click.Path(), help="Manifest to write (.csv or .jsonl).")
@click.option("--model", "models", multiple=True, help="Model of every job; repeat to cross (default: embedded).")
@click.option("--seed", "seeds", type=int, multiple=True, help="Seed; repeat to cross (default: 0).")
@click.option("--labels", type=click.Path(), default=None,
              help="CSV with columns path,class (paths relative to it) instead of class sub-folders.")
@click.option("--weights", default=None, help="Model weights of every job, as in synthesize.")
@click.option("--steps", type=int, default=None, help="Steps of every job (default: the preset's).")
@click.option("--size", default=None, metavar="TxHxW", help="Size of every job's video (default: the preset's).")
@click.option("--method", type=click.Choice(["leaps", "deepdream", "am"]), default=None, help="As in synthesize.")
@click.option("--objective", type=click.Choice(["full", "prim", "prim+coh", "prim+feat"]), default=None,
              help="As in synthesize.")
@click.option("--distance", type=click.Choice(["jvs", "cos", "l1", "l2"]), default=None, help="As in synthesize.")
@click.option("--priming-layers", type=float, default=None, metavar="FRACTION", help="As in synthesize.")
@click.option("--r", "r", type=float, default=None, help="As in synthesize.")
@click.option("--verifier", default=None, help="As in synthesize.")
@click.option("--verifier-weights", default=None, help="As in synthesize.")
def sweep_plan(stimuli_root: str, out: str, models: tuple[str, ...], seeds: tuple[int, ...], labels: str | None,
               **settings: object) -> None:
    """Write a manifest: every stimulus under STIMULI x every --model x every --seed.

    A stimulus's class is the name of its sub-folder (STIMULI/<class>/<video, tensor or frame folder>),
    or its row in --labels.
    """
    from leaps_engine.cli_sweep import run_plan

    with _user_errors():
        settings["size"] = _parse_size(settings["size"])
        run_plan(stimuli_root=stimuli_root, models=models, seeds=seeds, labels=labels, out=out, settings=settings)


@sweep.command("run")
@click.argument("manifest", type=click.Path(), metavar="MANIFEST")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Sweep folder (results, log).")
@click.option("--batch-size", type=int, default=8, show_default=True,
              help="Jobs with the same model and settings synthesized together (a speed-up only).")
@click.option("--max-attempts", type=int, default=3, show_default=True,
              help="A job that failed this many times (over all runs of the sweep) is not tried again.")
@click.option("--device", default="cpu", show_default=True, help="Torch device when running in this process.")
@click.option("--ray-address", default=None, metavar="auto|HOST:PORT|local",
              help="Run batches as Ray tasks on this cluster ('local' starts one here); default: in this process.")
@click.option("--gpus-per-task", type=float, default=0.0, show_default=True,
              help="GPUs each Ray task reserves (1 on a GPU cluster: each batch runs on its own GPU as cuda).")
@click.option("--cpus-per-task", type=int, default=None,
              help="CPUs each Ray task reserves (default: the sweep's thread count, --threads).")
@click.option("--local-cpus", type=int, default=None, help="CPUs of the cluster that --ray-address local starts.")
@_threads_option
def sweep_run(**options: object) -> None:
    """Run every unfinished job of MANIFEST; rerun the same command to resume or retry.

    Finished jobs are skipped, failed ones retried (up to --max-attempts), and each result folder
    appears only when complete. Exit status 1 if a job failed.
    """
    from leaps_engine.cli_sweep import run_sweep_command

    with _user_errors():
        finished = run_sweep_command(**options)
    sys.exit(0 if finished else 1)


@sweep.command("report")
@click.argument("sweep_dir", type=click.Path(), metavar="DIR")
@click.option("--evaluator", default=None, metavar="NAME", help="Also score every clip with this network.")
@click.option("--evaluator-weights", default=None, help="Evaluator weights (default: its pretrained weights).")
@click.option("--device", default="cpu", show_default=True, help="Torch device of the scoring networks.")
@click.option("--format", "output_format", type=click.Choice(["md", "csv", "json"]), default="md",
              show_default=True, help="Table format.")
@click.option("--out", default=None, type=click.Path(), help="Also write the table to this file.")
@click.option("--group-by", default=None, metavar="KEYS",
              help="Comma-separated result.json keys (default: model,method,objective).")
@_threads_option
def sweep_report(**options: object) -> None:
    """The quality table (as `evaluate` prints it) over every finished job of the sweep in DIR."""
    from leaps_engine.cli_sweep import run_report

    with _user_errors():
        run_report(**options)
