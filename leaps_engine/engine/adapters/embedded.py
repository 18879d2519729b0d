"""The embedded models: a small classifier and its verifier, trained on the procedural action clips.

Their weights ship inside the package (``leaps_engine/engine/embedded/weights``, retrained by
``python -m leaps_engine.engine.embedded.train``), so they work offline. ``weights="embedded"`` loads the
shipped file, ``"random"`` keeps the random initialisation, a path loads that checkpoint.
"""

from __future__ import annotations

from importlib import resources

from torch import nn

from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.engine.adapters.registry import AdapterParts, register_adapter
from leaps_engine.engine.adapters.weights import RANDOM_WEIGHTS, load_checkpoint_into
from leaps_engine.engine.embedded.generator import (
    CLASS_NAMES,
    CLIP_FRAMES,
    CLIP_SIZE,
    PIXEL_MEAN,
    PIXEL_STD,
    generate_stimulus,
)
from leaps_engine.engine.embedded.networks import EmbeddedClassifier, EmbeddedEvaluator, EmbeddedVerifier

PRETRAINED = "embedded"

# Both networks take any clip of at least one frame of 1x1 pixel (padded convolutions, adaptive pooling);
# the last tap keeps T' = ceil(T / 2) frames, so T >= 3 is needed for temporal coherence. The preset's
# layers parameterisation needs T >= 2; a one-frame clip takes --parameterization pixel or fourier.
SPEC = InputSpec(
    frames=CLIP_FRAMES,
    sampling_rate=1,
    crop_size=CLIP_SIZE,
    fixed_size=False,
    mean=PIXEL_MEAN,
    std=PIXEL_STD,
    class_names=CLASS_NAMES,
    min_frames=1,
    min_size=1,
)
TAPS = ("stem", "block1", "block2", "block3")


def _build(model: nn.Module, weights: str, shipped_file: str, model_name: str) -> AdapterParts:
    """Load ``weights`` (the pretrained name, ``"random"`` or a path) into ``model``; taps in cthw layout."""
    if weights == PRETRAINED:
        shipped = resources.files("leaps_engine.engine.embedded") / "weights" / shipped_file
        with resources.as_file(shipped) as path:
            load_checkpoint_into(model, str(path), model_name)
    elif weights != RANDOM_WEIGHTS:
        load_checkpoint_into(model, weights, model_name)
    return AdapterParts(model=model, taps=TAPS, tap_format="cthw")


@register_adapter(family="embedded", spec=SPEC, pretrained=PRETRAINED, stimulus_source=generate_stimulus,
                  bench_weights=PRETRAINED)
def embedded(weights: str) -> AdapterParts:
    """Small 3D CNN trained on the embedded procedural action clips (8x32x32, 12 motions); the default."""
    return _build(EmbeddedClassifier(), weights, "classifier.pt", "embedded")


@register_adapter(family="embedded", spec=SPEC, pretrained=PRETRAINED, stimulus_source=generate_stimulus,
                  bench_weights=PRETRAINED)
def embedded_verifier(weights: str) -> AdapterParts:
    """3D ResNet verifier for the embedded model, trained on clips of the same domain."""
    return _build(EmbeddedVerifier(), weights, "verifier.pt", "embedded_verifier")


@register_adapter(family="embedded", spec=SPEC, pretrained=PRETRAINED, stimulus_source=generate_stimulus,
                  bench_weights=PRETRAINED)
def embedded_evaluator(weights: str) -> AdapterParts:
    """Independent GroupNorm evaluator for quality measurements, trained on its own clips; never a verifier."""
    return _build(EmbeddedEvaluator(), weights, "evaluator.pt", "embedded_evaluator")
