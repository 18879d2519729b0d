"""How sizes flow, as the paper has it: the stimulus v has x*'s size and takes x*'s path into the model
(Sec. 3.1), fixed-size models see x* interpolated to their own input (Sec. 4.1), and R_coh is computed on
the deepest tap that still has two frames at the size the model sees."""

import pytest
import torch

from leaps_engine import SynthesisConfig, Target, synthesize
from leaps_engine.config import preset_for
from leaps_engine.engine.adapters import create_adapter, get_adapter_entry, list_adapters
from leaps_engine.engine.embedded.generator import generate_stimulus
from leaps_engine.engine.step import coherence_tap
from leaps_engine.engine.stimulus import load_stimulus

# Sec. 4.1: "X3D, TimeSformer, Video Swin, MViTv2, rev-MViT and UniFormerV2, which use inputs of fixed size".
FIXED_FAMILIES = ("x3d_", "swin3d_", "mvit_")
MODELS = list_adapters("*")


@pytest.mark.parametrize("name", MODELS)
def test_the_papers_fixed_size_models_are_fixed_size(name):
    spec = get_adapter_entry(name).spec
    assert spec.fixed_size == name.startswith(FIXED_FAMILIES)
    if spec.fixed_size:
        assert spec.model_size(8, 224, 224) == (spec.frames, spec.crop_size, spec.crop_size)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_at_its_preset_size_every_model_gets_the_stimulus_at_that_size_and_a_coherence_tap(name):
    size = preset_for(name).size
    adapter = create_adapter(name, weights=get_adapter_entry(name).pretrained if name.startswith("embedded")
                             else "random")
    stimulus = load_stimulus(torch.rand(3, 130, 90, 120), adapter.spec, size)  # longer than any model's clip
    assert stimulus.shape == (3, *size)
    seen = tuple(adapter.fit_input(adapter.spec.normalize(stimulus)[None]).shape[2:])
    spec = adapter.spec
    assert seen == spec.model_size(*size)  # what x* of that size becomes too
    if spec.fixed_size:
        assert seen == (spec.frames, spec.crop_size, spec.crop_size)
    else:  # as given, or raised to the model's minimum (csn_r101 needs 25 frames)
        assert seen == tuple(max(a, b) for a, b in zip(size, (spec.min_frames, spec.min_size, spec.min_size), strict=True))
    tap = coherence_tap(adapter, size)
    assert tap is not None and adapter.tap_shapes(size)[tap][1] >= 2
    if adapter.tap_shapes(size)[adapter.taps[-1]][1] >= 2:
        assert tap == adapter.taps[-1]  # the paper's choice whenever it qualifies


def test_the_stimulus_and_x_star_reach_the_model_at_the_same_size(model, verifier, monkeypatch):
    seen = []
    fit_input = type(model).fit_input

    def recording_fit_input(adapter, video):
        seen.append((adapter.name, tuple(video.shape[2:])))
        return fit_input(adapter, video)

    monkeypatch.setattr(type(model), "fit_input", recording_fit_input)
    size = (4, 48, 40)  # neither the model's clip (8x32x32) nor square
    stimulus = generate_stimulus(3, seed=0)  # the generator's own size
    config = SynthesisConfig.from_preset("embedded", size=size, steps=1)
    result = synthesize(model, [Target(3, stimulus)], verifier=verifier, config=config)
    assert result.stimuli[0].shape == (3, *size)
    assert {shape for name, shape in seen if name == "embedded"} == {size}
    assert result.coherence_tap == model.taps[-1]


def test_a_model_whose_last_tap_has_one_frame_uses_a_deeper_one_with_two():
    adapter = create_adapter("r3d_18", weights="random")
    shapes = adapter.tap_shapes((8, 64, 64))  # r3d_18 halves time three times: layer4 has T' = 1
    assert shapes["layer4.1"][1] == 1 and shapes["layer3.1"][1] == 2
    assert coherence_tap(adapter, (8, 64, 64)) == "layer3.1"
    assert coherence_tap(adapter, (16, 64, 64)) == "layer4.1"
