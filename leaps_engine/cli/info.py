"""``leaps-engine models``, ``layers`` and ``classes``: what the registered models are, tap, and know."""

from __future__ import annotations

import click

from leaps_engine.cli.console import user_errors
from leaps_engine.cli.options import size_option
from leaps_engine.errors import LeapsError


@click.command()
@click.argument("pattern", default="*")
def models(pattern: str) -> None:
    """List registered models (fnmatch PATTERN) with their input specs."""
    from leaps_engine.engine.adapters import get_adapter_entry, list_adapters

    with user_errors():
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


@click.command()
@click.argument("model_name", metavar="MODEL")
@size_option("Size of x* (default: the preset's, as synthesize).")
@click.option("--shapes", is_flag=True, help="Also print each tap's shape [C, T', N] at that size.")
def layers(model_name: str, size: tuple[int, int, int] | None, shapes: bool) -> None:
    """List the priming taps of MODEL in forward order, their lambda, and the coherence tap at --size.

    The coherence tap is the deepest tap with at least two frames at the size the model sees (the last
    tap whenever it qualifies); finding it runs the model once on a zero video of that size.
    """
    from leaps_engine.config import preset_for
    from leaps_engine.engine.adapters import create_adapter
    from leaps_engine.engine.objectives import priming_weights
    from leaps_engine.engine.step import coherence_tap

    with user_errors():
        preset = preset_for(model_name)
        run_size = size or preset.size
        if min(run_size) < 1:
            raise LeapsError(f"--size must be three positive integers, got {'x'.join(map(str, run_size))}")
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


@click.command()
@click.argument("model_name", metavar="MODEL")
def classes(model_name: str) -> None:
    """List the class indices and names of MODEL."""
    from leaps_engine.engine.adapters import get_adapter_entry

    with user_errors():
        for index, name in enumerate(get_adapter_entry(model_name).spec.class_names):
            click.echo(f"{index:>4}  {name}")
