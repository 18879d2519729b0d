"""The adapter registry: the table of every model the engine can invert, by name.

A model family registers one builder per model::

    @register_adapter(family="torchvision", spec=..., pretrained="kinetics400")
    def r3d_18(weights: str) -> AdapterParts: ...

The builder receives ``weights`` (the pretrained name, ``"random"`` or a checkpoint path, already
validated) and returns the model, its taps and their layout. Building is
:func:`leaps_engine.engine.adapters.factory.create_adapter`'s; specs are known without building anything,
so listing models is instant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.engine.adapters.weights import RANDOM_WEIGHTS


@dataclass
class AdapterParts:
    """What a builder returns: the classifier (logits out), its taps in forward order, their layout."""

    model: nn.Module
    taps: Sequence[str]
    tap_format: str


StimulusMaker = Callable[[int, int], torch.Tensor]  # (class index, seed) -> pixels [3, T, H, W] in [0, 1]


@dataclass(frozen=True)
class AdapterEntry:
    """A registered model: its name, family, input spec, pretrained weights name and builder, and what it
    can do beyond classifying.

    ``stimulus_source`` makes a stimulus of a class for a seed, for models whose domain generates its own
    (the embedded ones); ``None`` where stimuli must be given. ``bench_weights`` are the weights ``bench
    --weights default`` times: the model's own where they ship with the package, else random (latency does
    not depend on the values).
    """

    name: str
    family: str
    spec: InputSpec
    pretrained: str
    builder: Callable[[str], AdapterParts]
    description: str
    stimulus_source: StimulusMaker | None = None
    bench_weights: str = RANDOM_WEIGHTS


_REGISTRY: dict[str, AdapterEntry] = {}


def register_adapter(*, family: str, spec: InputSpec, pretrained: str, description: str = "",
                     stimulus_source: StimulusMaker | None = None, bench_weights: str = RANDOM_WEIGHTS):
    """Register the decorated builder under its function name (see :class:`AdapterEntry` for the
    arguments); a duplicate name raises."""

    def decorator(builder: Callable[[str], AdapterParts]) -> Callable[[str], AdapterParts]:
        name = builder.__name__
        if name in _REGISTRY:
            raise ValueError(f"an adapter named {name!r} is already registered")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = AdapterEntry(name, family, spec, pretrained, builder, description or (doc[0] if doc else ""),
                                       stimulus_source, bench_weights)
        return builder

    return decorator


def registered() -> Iterator[AdapterEntry]:
    """Every entry registered so far (the factory imports the families first)."""
    return iter(_REGISTRY.values())
