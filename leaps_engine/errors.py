"""User-facing errors.

Every problem caused by the user's input (a missing file, an unknown model or class, an impossible size)
raises :class:`LeapsError` with a one-line message that names the problem. The CLI prints that line and
exits non-zero; anything else is a bug and keeps its traceback.
"""

import difflib
from collections.abc import Iterable


class LeapsError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def one_line(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (its type name if empty), cut to ``limit``."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:limit]


def close_names(name: str, candidates: Iterable[str], limit: int = 3) -> str:
    """A ' (did you mean: a, b?)' suffix listing the candidates closest to ``name``, or ''."""
    candidates = list(candidates)
    matches = difflib.get_close_matches(name, candidates, n=limit, cutoff=0.5)
    if not matches:
        lowered = name.lower()
        matches = [c for c in candidates if lowered in c.lower()][:limit]
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""
