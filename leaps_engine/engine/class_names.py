"""Class names: the one rule by which a name the user gives finds a model's class.

Used by ``--class``, by sweeps, by ``evaluate`` (a result's target in another network's classes) and by the
embedded generator.
"""

from __future__ import annotations

from collections.abc import Sequence


def class_key(name: str) -> str:
    """A class name as :func:`class_index` compares it: stripped, lower case, underscores as spaces."""
    return name.strip().lower().replace("_", " ")


def class_index(name: str, class_names: Sequence[str]) -> int | None:
    """The index of class ``name`` in ``class_names``, or ``None``: the one matching rule of the project.

    An exact name matches first; otherwise names are compared after :func:`class_key` (case- and
    underscore-insensitive, so ``"Juggling_Balls"`` finds ``"juggling balls"``).
    """
    if name in class_names:
        return list(class_names).index(name)
    keys = {class_key(candidate): index for index, candidate in reversed(list(enumerate(class_names)))}
    return keys.get(class_key(name))
