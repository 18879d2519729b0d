"""The torchvision and pytorchvideo adapters: build, logits, taps, frozen weights, weights loading."""

from __future__ import annotations

import copy
import urllib.error

import pytest
import torch

from leaps_engine.engine.adapters import create_adapter, get_adapter_entry, list_adapters
from leaps_engine.engine.adapters.base import record_outputs
from leaps_engine.engine.adapters.kinetics import KINETICS400_CLASSES
from leaps_engine.errors import LeapsError

# name -> (number of taps, channels of the last tap). Models whose test takes over ~3 s on 2 cores are slow.
EXPECTED_TAPS = {
    "r3d_18": (9, 512),
    "mc3_18": (9, 512),
    "r2plus1d_18": (9, 512),
    "s3d": (12, 1024),
    "mvit_v1_b": (16, 768),
    "mvit_v2_s": (16, 768),
    "swin3d_t": (14, 768),
    "swin3d_s": (26, 768),
    "swin3d_b": (26, 1024),
    "x3d_xs": (28, 432),
    "x3d_s": (28, 432),
    "x3d_m": (28, 432),
    "x3d_l": (57, 432),
    "slow_r50": (17, 2048),
    "csn_r101": (34, 2048),
    "r2plus1d_r50": (17, 2048),
    "mvit_base_16x4": (16, 768),
}
SLOW = {"mvit_v1_b", "mvit_v2_s", "mvit_base_16x4", "x3d_l", "csn_r101", "r2plus1d_r50"}
FAMILIES = ("torchvision", "pytorchvideo")


def _params(names):
    return [pytest.param(name, marks=pytest.mark.slow if name in SLOW else ()) for name in sorted(names)]


def _test_input(spec) -> torch.Tensor:
    """A small valid batch of 2: fixed-size models get a tiny clip (the adapter resizes it)."""
    if spec.fixed_size:
        frames, size = 4, 32
    else:
        frames, size = max(spec.min_frames, 4), max(spec.min_size, 32)
    return torch.randn(2, 3, frames, size, size)


def _channels(raw_output: object, tap_format: str) -> int:
    """The channel count of a tap in the model's own layout."""
    if tap_format == "tokens":
        return raw_output[0].shape[-1]
    return raw_output.shape[-1] if tap_format == "thwc" else raw_output.shape[1]


def test_expected_table_covers_every_registered_model():
    registered = {name for name in list_adapters() if get_adapter_entry(name).family in FAMILIES}
    assert registered == set(EXPECTED_TAPS)


@pytest.mark.parametrize("name", _params(EXPECTED_TAPS))
def test_adapter_logits_taps_and_frozen_gradients(name):
    torch.manual_seed(0)
    adapter = create_adapter(name, weights="random")
    spec = adapter.spec
    assert spec.class_names == KINETICS400_CLASSES and spec.num_classes == 400
    assert spec.frames >= spec.min_frames and spec.crop_size >= spec.min_size
    assert not any(type(module).__name__ == "Swish" for module in adapter.modules())

    x = _test_input(spec).requires_grad_()
    with record_outputs(adapter.model, adapter.taps) as raw:
        logits, taps = adapter.forward_with_taps(x)

    assert logits.shape == (2, 400)
    is_probability = bool((logits >= 0).all()) and torch.allclose(logits.sum(1), torch.ones(2), atol=1e-3)
    assert not is_probability, "the head still ends in a softmax"
    count, last_channels = EXPECTED_TAPS[name]
    assert len(taps) == len(adapter.taps) == count
    frames = spec.frames if spec.fixed_size else x.shape[2]
    for tap_name, tap in zip(adapter.taps, taps, strict=True):
        assert tap.ndim == 4 and tap.shape[0] == 2, tap_name
        assert tap.shape[1] == _channels(raw[tap_name], adapter.tap_format), tap_name
        assert 1 <= tap.shape[2] <= frames and tap.shape[3] >= 1, tap_name
    assert taps[-1].shape[1] == last_channels

    # the priming loss backpropagates through the taps, the class loss through the logits
    (logits.sum() + sum(tap.mean() for tap in taps)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(param.grad is None for param in adapter.parameters())


def _resizable_pytorchvideo_models() -> list[str]:
    entries = [get_adapter_entry(name) for name in sorted(EXPECTED_TAPS)]
    return [entry.name for entry in entries if entry.family == "pytorchvideo" and not entry.spec.fixed_size]


@pytest.mark.parametrize("name", _resizable_pytorchvideo_models())
def test_pytorchvideo_minimum_sizes_are_tight(name):
    """pytorchvideo sizes were found by trying (torchvision's come from its weights' meta, e.g. S3D's are loose)."""
    adapter = create_adapter(name, weights="random")
    spec = adapter.spec
    model = copy.deepcopy(adapter.model).to("meta")

    def runs(frames: int, size: int) -> bool:
        try:
            model(torch.empty(1, 3, frames, size, size, device="meta"))
        except RuntimeError:
            return False
        return True

    assert runs(spec.min_frames, spec.min_size)
    assert not runs(spec.min_frames - 1, spec.min_size)
    assert not runs(spec.min_frames, spec.min_size - 1)


def test_inputs_below_the_minimum_are_resized_up_to_it():
    adapter = create_adapter("slow_r50", weights="random")  # needs at least 8 x 193 x 193
    assert adapter.spec.model_size(2, 64, 200) == (8, 193, 200)
    with torch.no_grad():
        logits, taps = adapter.forward_with_taps(torch.randn(1, 3, 2, 64, 64))
    assert logits.shape == (1, 400) and taps[-1].shape[2] == 8


def test_fixed_size_models_resize_every_input_to_their_own():
    adapter = create_adapter("x3d_xs", weights="random")  # X3D-XS: 4 x 160 x 160, as in its Kinetics recipe
    assert adapter.spec.model_size(8, 224, 224) == adapter.spec.model_size(2, 64, 200) == (4, 160, 160)
    with torch.no_grad():
        logits, taps = adapter.forward_with_taps(torch.randn(1, 3, 8, 96, 128))
    assert logits.shape == (1, 400) and taps[0].shape[2:] == (4, 80 * 80)


def test_unknown_model_suggests_close_names():
    with pytest.raises(LeapsError, match="r3d_18"):
        create_adapter("r3d_19")


@pytest.mark.parametrize("name, wrap", [("r3d_18", False), ("x3d_xs", True)])
def test_checkpoint_round_trip(tmp_path, name, wrap):
    torch.manual_seed(0)
    source = create_adapter(name, weights="random")
    state = source.model.state_dict()
    path = tmp_path / "model.pt"
    torch.save({"model_state": state} if wrap else state, path)  # pytorchvideo checkpoints wrap it

    torch.manual_seed(1)
    loaded = create_adapter(name, weights=str(path))
    x = _test_input(loaded.spec)
    with torch.no_grad():
        assert torch.equal(source(x), loaded(x))


def test_checkpoint_with_missing_key(tmp_path):
    state = create_adapter("r3d_18", weights="random").model.state_dict()
    state.pop(next(iter(state)))
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(LeapsError, match="missing"):
        create_adapter("r3d_18", weights=str(path))


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(LeapsError, match="not a readable PyTorch checkpoint"):
        create_adapter("r3d_18", weights=str(path))


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(LeapsError, match="not found"):
        create_adapter("r3d_18", weights=str(tmp_path / "absent.pt"))


@pytest.mark.parametrize("name", ["r3d_18", "x3d_xs"])
def test_download_failure_is_a_leaps_error(monkeypatch, tmp_path, name):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached weights
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(LeapsError, match="could not download the kinetics400 weights.*unreachable.*random"):
        create_adapter(name, weights="kinetics400")
