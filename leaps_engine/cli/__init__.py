"""The ``leaps-engine`` command line: one module per command, the only layer that prints.

Problems with the user's input end with one ``error: ...`` line on stderr and exit status 2
(:mod:`leaps_engine.cli.console`); options shared by several commands are declared once in
:mod:`leaps_engine.cli.options`. Nothing outside this package imports it; its modules import torch only
when a command computes, so ``--help`` is immediate.
"""

from __future__ import annotations

import click

from leaps_engine.cli.bench import bench
from leaps_engine.cli.console import Commands
from leaps_engine.cli.evaluate import evaluate
from leaps_engine.cli.export import export
from leaps_engine.cli.info import classes, layers, models
from leaps_engine.cli.report import report
from leaps_engine.cli.sweep import sweep
from leaps_engine.cli.synthesize import synthesize
from leaps_engine.cli.tune import tune


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leaps-engine")
def main() -> None:
    """Synthesize videos that show what a video classifier has learned (LEAPS, ICCV 2023)."""


for command in (synthesize, bench, tune, export, evaluate, report, models, layers, classes, sweep):
    main.add_command(command)
