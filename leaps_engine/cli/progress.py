"""Progress bars of the command line: tqdm bars that appear with their first update.

A command validates its input and builds its networks before the first unit of work; a bar created up
front would print ``0%`` above the one ``error:`` line of a bad input. Part of the CLI.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


class LazyBar:
    """``tqdm(**options)`` created on the first :meth:`update`, :meth:`set_postfix` or :meth:`describe`."""

    def __init__(self, **options: object):
        self.options = {"dynamic_ncols": True, "file": sys.stderr, **options}
        self._bar: tqdm | None = None

    @property
    def bar(self) -> tqdm:
        if self._bar is None:
            self._bar = tqdm(**self.options)
        return self._bar

    def set_total(self, total: int) -> None:
        """Set the number of units once it is known (before the first update)."""
        self.options["total"] = total
        if self._bar is not None:
            self._bar.total = total

    def update(self, count: int = 1) -> None:
        self.bar.update(count)

    def set_postfix(self, *args: object, **kwargs: object) -> None:
        self.bar.set_postfix(*args, **kwargs)

    def describe(self, text: str) -> None:
        """Show ``text`` as the bar's description now (e.g. what a long silent phase is doing)."""
        self.bar.set_description_str(text, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
