"""``python -m leaps_engine`` runs the CLI."""

from leaps_engine.cli import main

main()
