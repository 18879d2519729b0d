"""The adapter registry: every model the engine can invert, by name.

A model family registers one builder per model::

    @register_adapter(family="torchvision", spec=..., pretrained="kinetics400")
    def r3d_18(weights: str) -> AdapterParts: ...

The builder receives ``weights`` (the pretrained name, ``"random"`` or a checkpoint path, already
validated) and returns the model, its taps and their layout. :func:`create_adapter` wraps the result in a
frozen :class:`VideoAdapter`. Specs are known without building anything, so listing models is instant.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from leaps_engine.engine.adapters.base import InputSpec, VideoAdapter
from leaps_engine.errors import LeapsError, close_names, one_line

RANDOM_WEIGHTS = "random"


@dataclass
class AdapterParts:
    """What a builder returns: the classifier (logits out), its taps in forward order, their layout."""

    model: nn.Module
    taps: Sequence[str]
    tap_format: str


@dataclass(frozen=True)
class AdapterEntry:
    """A registered model: its name, family, input spec, pretrained weights name and builder."""

    name: str
    family: str
    spec: InputSpec
    pretrained: str
    builder: Callable[[str], AdapterParts]
    description: str


_REGISTRY: dict[str, AdapterEntry] = {}


def register_adapter(*, family: str, spec: InputSpec, pretrained: str, description: str = ""):
    """Register the decorated builder under its function name; a duplicate name raises."""

    def decorator(builder: Callable[[str], AdapterParts]) -> Callable[[str], AdapterParts]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"an adapter named {name!r} is already registered")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = AdapterEntry(name, family, spec, pretrained, builder, description or (doc[0] if doc else ""))
        return builder

    return decorator


def _ensure_families_loaded() -> None:
    """Import the modules that register adapters (kept lazy so ``import leaps_engine`` stays light)."""
    from leaps_engine.engine.adapters import embedded, pytorchvideo_models, torchvision_models  # noqa: F401


def list_adapters(pattern: str = "*") -> list[str]:
    """Names of registered adapters matching an fnmatch ``pattern``, sorted."""
    _ensure_families_loaded()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def get_adapter_entry(name: str) -> AdapterEntry:
    """The registry entry for ``name``; an unknown name raises :class:`LeapsError` with close names."""
    _ensure_families_loaded()
    if name not in _REGISTRY:
        raise LeapsError(f"unknown model {name!r}{close_names(name, _REGISTRY)}; see `leaps-engine models`")
    return _REGISTRY[name]


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
        if not _looks_like_path(weights):
            raise LeapsError(
                f"weights {weights!r} for {name}: expected {entry.pretrained!r}, {RANDOM_WEIGHTS!r} or a checkpoint path"
            )
        if not os.path.isfile(weights):
            raise LeapsError(f"weights file not found: {weights}")
    parts = entry.builder(weights)
    adapter = VideoAdapter(entry.name, entry.spec, parts.model, parts.taps, parts.tap_format)
    return adapter.to(device) if device is not None else adapter


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or weights.endswith((".pt", ".pth", ".pyth", ".ckpt", ".bin")) or os.path.exists(weights)


def load_checkpoint_into(model: nn.Module, path: str, model_name: str) -> None:
    """Load a local checkpoint into ``model`` with ``weights_only=True``; keys and shapes must match.

    Accepts a plain state dict or a dict holding one under ``state_dict``, ``model_state`` or ``model``
    (the layouts of torchvision, PySlowFast and pytorchvideo checkpoints).
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise LeapsError(f"{path} is not a readable PyTorch checkpoint ({one_line(error, 160)})") from None
    state_dict = _find_state_dict(checkpoint)
    if state_dict is None:
        raise LeapsError(f"{path} holds no state dict of tensors")
    _load_matching(model, state_dict, path, model_name)


def _find_state_dict(checkpoint: object) -> Mapping[str, torch.Tensor] | None:
    if not isinstance(checkpoint, Mapping):
        return None
    for key in ("state_dict", "model_state", "model"):
        if isinstance(checkpoint.get(key), Mapping):
            return checkpoint[key]
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return checkpoint
    return None


def _load_matching(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, model_name: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise LeapsError(f"{source} does not match {model_name}: keys {', '.join(detail)}")
    for key, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise LeapsError(
                f"{source} does not match {model_name}: {key} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state_dict)
