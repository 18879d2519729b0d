"""How the command line ends: problems with the user's input as one ``error: ...`` line and exit status 2,
warnings as one ``warning: ...`` line each, and Ctrl-C, SIGTERM or SIGHUP as one line and exit status
128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from leaps_engine._io import signals_interrupt
from leaps_engine.errors import LeapsError


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
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


class Commands(click.Group):
    """The command group; a usage error (an unknown option, a value out of range) or a value an option's
    parser refuses is one ``error:`` line with exit status 2, like every other bad input, instead of
    click's three-line usage message."""

    def main(self, *args: object, **kwargs: object) -> object:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            click.echo(error.ctx.get_help())
            sys.exit(0)
        except LeapsError as error:  # raised while parsing an option's value
            click.echo(f"error: {error}", err=True)
            sys.exit(2)
        except click.ClickException as error:
            click.echo(f"error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except click.exceptions.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


def check_writable_file(out: Path) -> None:
    """Raise :class:`LeapsError` unless ``out`` names a file in an existing, writable folder."""
    folder = out.parent
    if out.is_dir():
        raise LeapsError(f"--out {out} is a folder; give a file name")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise LeapsError(f"cannot write {out}: folder {folder} does not exist or is not writable")
