"""Building adapters: find a registered model by name and build it with its weights.

The family modules (:mod:`~leaps_engine.engine.adapters.embedded`, ``torchvision_models``,
``pytorchvideo_models``) register their models when imported; this module imports them on first use, so
``import leaps_engine`` stays light.
"""

from __future__ import annotations

import fnmatch
import os

import torch

from leaps_engine.engine.adapters.base import VideoAdapter
from leaps_engine.engine.adapters.registry import AdapterEntry, registered
from leaps_engine.engine.adapters.weights import RANDOM_WEIGHTS, looks_like_path
from leaps_engine.errors import LeapsError, close_names


def _entries() -> list[AdapterEntry]:
    """Every registered model, the family modules imported first (on first use)."""
    from leaps_engine.engine.adapters import embedded, pytorchvideo_models, torchvision_models  # noqa: F401

    return list(registered())


def list_adapters(pattern: str = "*") -> list[str]:
    """Names of registered adapters matching an fnmatch ``pattern``, sorted."""
    return sorted(entry.name for entry in _entries() if fnmatch.fnmatch(entry.name, pattern))


def get_adapter_entry(name: str) -> AdapterEntry:
    """The registry entry for ``name``; an unknown name raises :class:`LeapsError` with close names."""
    entries = {entry.name: entry for entry in _entries()}
    if name not in entries:
        raise LeapsError(f"unknown model {name!r}{close_names(name, entries)}; see `leaps-engine models`")
    return entries[name]


def create_adapter(
    name: str, weights: str | os.PathLike | None = None, device: str | torch.device | None = None
) -> VideoAdapter:
    """Build the named model as a frozen, eval-mode :class:`VideoAdapter`.

    Args:
        name: a registered adapter name (see :func:`list_adapters`).
        weights: the model's own weights, the default: ``"kinetics400"`` for the Kinetics models
            (downloaded by the model's library) and ``"embedded"`` for the embedded ones (shipped with
            the package), as ``leaps-engine models`` lists; or ``"random"``; or the path of a local
            checkpoint (loaded with ``weights_only=True``; keys must match).

    Raises:
        LeapsError: an unknown name, unknown weights, a missing or mismatched checkpoint, a failed download.
        device: where to put the model (default: CPU).
    """
    entry = get_adapter_entry(name)
    weights = entry.pretrained if weights is None else os.fspath(weights)
    if weights not in (entry.pretrained, RANDOM_WEIGHTS):
        if not looks_like_path(weights):
            raise LeapsError(
                f"weights {weights!r} for {name}: expected {entry.pretrained!r}, {RANDOM_WEIGHTS!r} or a "
                "checkpoint path"
            )
        if not os.path.isfile(weights):
            raise LeapsError(f"weights file not found: {weights}")
    parts = entry.builder(weights)
    adapter = VideoAdapter(entry.name, entry.spec, parts.model, parts.taps, parts.tap_format, weights=weights,
                           stimulus_source=entry.stimulus_source)
    return adapter.to(device) if device is not None else adapter
