"""Options shared by several commands, each declared once, with their choices from :mod:`leaps_engine.config`.

Every decorator here adds one option (or one group of options) to a click command. Parsing callbacks turn
text into values (``--size 8x224x224`` -> ``(8, 224, 224)``) and raise :class:`LeapsError` for bad input,
which the command group prints as one ``error:`` line. This module imports no torch, so ``--help`` is fast.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from leaps_engine.config import (
    DTYPES,
    FORWARD_BACKENDS,
    KERNEL_BACKENDS,
    METHODS,
    OBJECTIVES,
    PARAMETERIZATIONS,
    PRIMING_DISTANCES,
    TABLE_FORMATS,
)
from leaps_engine.errors import LeapsError

EMBEDDED_MODEL = "embedded"
Decorator = Callable[[Callable], Callable]


def parse_size(value: str | None) -> tuple[int, int, int] | None:
    """``"TxHxW"`` -> ``(T, H, W)``; ``None`` stays ``None``. Raises :class:`LeapsError` otherwise."""
    if value is None:
        return None
    parts = value.lower().split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise LeapsError(f"--size must look like TxHxW (e.g. 8x224x224), got {value!r}")
    return tuple(int(p) for p in parts)


def parse_snapshots(value: str | None) -> list[int]:
    """``"100,500,2000"`` -> sorted distinct steps ``[100, 500, 2000]``; empty -> ``[]``."""
    if not value:
        return []
    try:
        steps = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise LeapsError(f"--snapshots must be comma-separated step numbers, got {value!r}") from None
    if any(step < 1 for step in steps):
        raise LeapsError(f"--snapshots steps must be >= 1, got {value!r}")
    return steps


def parsed_by(parse: Callable) -> Callable:
    """A click callback applying ``parse`` to the value (to each value of a repeated option)."""

    def callback(ctx: click.Context, param: click.Parameter, value: object) -> object:
        if isinstance(value, tuple):
            return tuple(parse(item) for item in value)
        return parse(value)

    return callback


def _stack(*decorators: Decorator) -> Decorator:
    """One decorator applying ``decorators`` in order, so the options appear in ``--help`` as listed."""

    def apply(command: Callable) -> Callable:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def threads_option(command: Callable) -> Callable:
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


def device_option(help: str = "Torch device, e.g. cpu or cuda:0.") -> Decorator:
    return click.option("--device", default="cpu", show_default=True, help=help)


def model_option(help: str) -> Decorator:
    return click.option("--model", "model_name", default=EMBEDDED_MODEL, show_default=True, help=help)


def weights_option(help: str = "Model weights, as in synthesize.") -> Decorator:
    return click.option("--weights", default=None, help=help)


def classes_option(help: str) -> Decorator:
    return click.option("--class", "classes", multiple=True, metavar="NAME|INDEX", help=help)


def stimuli_option(help: str) -> Decorator:
    return click.option("--stimulus", "stimuli", multiple=True, type=click.Path(), metavar="PATH", help=help)


def size_option(help: str = "Size of the synthesized video (default: preset).") -> Decorator:
    return click.option("--size", default=None, metavar="TxHxW", callback=parsed_by(parse_size), help=help)


def verifier_options(help: str = "Verifier for R_feat (default: the preset's, x3d_s for Kinetics models); 'none' "
                                 "drops R_feat.") -> Decorator:
    return _stack(
        click.option("--verifier", default=None, help=help),
        click.option("--verifier-weights", default=None,
                     help="Verifier weights (default: the model's weights kind: pretrained, or 'random' with "
                          "--weights random)."),
    )


def setting_options(command: Callable) -> Callable:
    """The method's settings a run or a sweep job may override (fields of :class:`SynthesisConfig`; unset:
    the model's preset)."""
    return _stack(
        click.option("--steps", type=int, default=None, help="Optimisation steps (default: the model's preset)."),
        size_option(),
        click.option("--lambda-first", type=float, default=None, help="Priming weight of the first tap (preset)."),
        click.option("--lambda-last", type=float, default=None, help="Priming weight of the last tap (preset)."),
        click.option("--r", "r", type=float, default=None,
                     help="Regulariser scale r in CE + L_prim + r(R_coh + R_feat)."),
        click.option("--distance", type=click.Choice(PRIMING_DISTANCES), default=None,
                     help="Priming distance (default jvs)."),
        click.option("--priming-layers", type=float, default=None, metavar="FRACTION",
                     help="Share of the taps, first ones first, used for priming (default 1.0: all)."),
        click.option("--method", type=click.Choice(METHODS), default=None,
                     help="leaps (default), or a Table 1 baseline without priming: deepdream (CE + TV + L2) or am "
                          "(activation maximisation: the target logit, with L2 decay)."),
        click.option("--objective", type=click.Choice(OBJECTIVES), default=None,
                     help="LEAPS terms (Table 3 ablation): full (default) = CE + L_prim + r(R_coh + R_feat)."),
        click.option("--parameterization", type=click.Choice(PARAMETERIZATIONS), default=None,
                     help="How x* is optimised: pixel (the paper's; the default of every preset but embedded's), "
                          "fourier (a space-time spectrum in decorrelated colour, mapped to pixels by a sigmoid), "
                          "warp (the stimulus's first frame moved by an optimised displacement field) or layers "
                          "(the objects of that frame, each moved as a whole by an optimised similarity motion)."),
        click.option("--init-scale", type=float, default=None,
                     help="Standard deviation of x*'s start (pixel: in the model's normalised space, default 1; "
                          "fourier: before the sigmoid, default 0.6; warp: velocities in pixels per frame, "
                          "default 0.1; layers: velocities in pixels, radians and log-scale per frame, "
                          "default 0.1)."),
        click.option("--spatial-decay", type=float, default=None,
                     help="fourier: power of the spatial frequency the amplitudes fall with (default 1; 0: white)."),
        click.option("--temporal-decay", type=float, default=None,
                     help="fourier: power of the temporal frequency the amplitudes fall with (default 1)."),
        click.option("--moving-layers", type=int, default=None, metavar="N",
                     help="layers: how many of the largest objects move; the others stay still (default: all 8; "
                          "the embedded preset: 2)."),
        click.option("--motion-sparsity", type=float, default=None, metavar="WEIGHT",
                     help="layers: after each step, shrink every velocity toward zero by this share of the step's "
                          "learning rate, so motion the objective does not keep asking for fades (default 0: off; the "
                          "embedded preset: 0.15)."),
        click.option("--warp-grid", type=int, default=None, metavar="POINTS",
                     help="warp: control points per side of the displacement field (default 8)."),
        click.option("--jitter", type=int, default=None, metavar="PIXELS",
                     help="Random shift of x* before each forward, up to this many pixels (default 0: off)."),
        click.option("--scale-jitter", type=float, default=None, metavar="FRACTION",
                     help="Random zoom of x* before each forward, up to this fraction (e.g. 0.1; default 0: off)."),
        click.option("--time-shift", type=int, default=None, metavar="FRAMES",
                     help="Random circular shift of x* along time, up to this many frames (default 0: off)."),
        click.option("--restarts", type=int, default=None, metavar="N",
                     help="Optimise each video from N starting points at once (N times the batch) and keep the "
                          "one with the lowest loss (default 1; the embedded preset: 4)."),
        verifier_options(),
    )(command)


def acceleration_options(command: Callable) -> Callable:
    """The speed settings (fields of :class:`~leaps_engine.config.Acceleration`); they never change the method."""
    return _stack(
        click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True,
                     help="Network precision (auto: bfloat16 on CUDA, float32 on CPU); losses stay float32."),
        click.option("--channels-last", is_flag=True, help="Run the networks on channels-last (NDHWC) tensors."),
        click.option("--compile", "compile_step", is_flag=True,
                     help="torch.compile the whole step (one compile per shape; its time is reported separately)."),
        click.option("--cuda-graphs", is_flag=True,
                     help="Capture the compiled step in CUDA graphs (CUDA only; implies --compile)."),
        click.option("--kernels", type=click.Choice(KERNEL_BACKENDS), default="auto", show_default=True,
                     help="JVS priming and BN-statistics loss kernels: auto tries triton (CUDA), then compile, "
                          "then eager."),
    )(command)


def forward_backend_option(what: str) -> Decorator:
    return click.option(
        "--forward-backend", type=click.Choice(FORWARD_BACKENDS), default="torch", show_default=True,
        help=f"Backend of {what}: torch, or an ONNX export run by onnxruntime or tensorrt (float16 on CUDA), "
             "checked against torch on first use.")


def table_options(command: Callable) -> Callable:
    """``--format md|csv|json`` and ``--out FILE`` of the commands that print a table."""
    return _stack(
        click.option("--format", "output_format", type=click.Choice(TABLE_FORMATS), default="md",
                     show_default=True, help="Table format."),
        click.option("--out", default=None, type=click.Path(), help="Also write the table to this file."),
    )(command)
