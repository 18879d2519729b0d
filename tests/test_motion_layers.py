"""The layers parameterisation: which objects it finds, how each moves, its bounds, and a run under it."""

import math

import pytest
import torch
from click.testing import CliRunner

from leaps_engine import SynthesisConfig, Target, synthesize
from leaps_engine.cli import main
from leaps_engine.config import Acceleration
from leaps_engine.engine.embedded.generator import generate_stimulus
from leaps_engine.engine.motion_layers import (
    MAX_GROWTH,
    MAX_LAYERS,
    MAX_SPEED,
    MAX_SPIN,
    LayerParameterization,
    find_layers,
    min_layer_area,
)
from leaps_engine.errors import LeapsError

SIZE = (4, 16, 16)
GREY = 102 / 255  # a whole 8-bit level, as the inpainted background is


def _frame(*squares):
    """One frame ``[1, 3, 16, 16]`` on grey: per square ``(left, top, side, colour)``."""
    frame = torch.full((1, 3, *SIZE[1:]), GREY)
    for left, top, side, colour in squares:
        frame[..., top:top + side, left:left + side] = torch.tensor(colour)[:, None, None]
    return frame


def _layers(model, frames, seeds=(0,)):
    return LayerParameterization(seeds, SIZE, model.spec, torch.device("cpu"), frames)


def _set_velocity(x_star, layer, velocity):
    with torch.no_grad():
        velocities = x_star.parameters()[0]
        velocities.zero_()
        velocities[:, :, layer] = torch.tensor(velocity)


def test_each_object_is_a_layer_largest_first_and_specks_stay_in_the_background():
    frame = torch.full((1, 3, 32, 32), GREY)
    for left, top, side, colour in ((2, 2, 3, (1.0, 1.0, 1.0)), (16, 16, 4, (1.0, 0.0, 0.0)), (26, 4, 1, (0.0, 0.0, 1.0))):
        frame[..., top:top + side, left:left + side] = torch.tensor(colour)[:, None, None]
    masks = find_layers(frame)  # at 32 x 32 a layer has at least 4 pixels: the 1-pixel speck stays
    assert masks.shape == (1, MAX_LAYERS, 32, 32) and min_layer_area(32, 32) == 4 and min_layer_area(16, 16) == 1
    assert masks[0].sum(dim=(1, 2)).tolist() == [16.0, 9.0] + [0.0] * (MAX_LAYERS - 2)  # hard edges: no soft edge
    assert bool(masks[0, 0, 16:20, 16:20].all()) and bool(masks[0, 1, 2:5, 2:5].all())


def test_an_object_wider_than_the_median_window_is_found_whole():
    frame = torch.full((1, 3, 32, 32), GREY)
    frame[..., 10:20, 10:20] = 1.0  # its middle matches the 11-pixel median background
    alphas = find_layers(frame)[0]
    assert float(alphas[0].sum()) == 100.0 and float(alphas[1:].sum()) == 0.0


def test_a_pixel_between_two_objects_is_the_edge_of_one_only():
    frame = _frame((2, 6, 3, (1.0, 1.0, 1.0)), (6, 6, 2, (1.0, 1.0, 1.0)))
    frame[..., 6:8, 5] = GREY + 0.25 * (1.0 - GREY)  # the gap column, a quarter white
    alphas = find_layers(frame)[0]
    assert float(alphas[:, 6:8, 5].sum(dim=0).max()) <= 0.25 + 1e-6  # not counted twice


def test_a_frame_without_objects_is_an_error(model):
    with pytest.raises(LeapsError, match="found no object to move"):
        _layers(model, torch.full((1, 3, *SIZE[1:]), GREY))


def test_a_layer_moves_by_its_velocity_and_leaves_background_behind(model):
    x_star = _layers(model, _frame((2, 3, 4, (1.0, 1.0, 1.0))))
    _set_velocity(x_star, 0, [2.0, 1.0, 0.0, 0.0])  # 2 pixels right, 1 down per frame
    pixels = model.spec.denormalize(x_star.video().detach())[0]  # [3, T, H, W]
    for t in range(SIZE[0]):
        expected = _frame((2 + 2 * t, 3 + t, 4, (1.0, 1.0, 1.0)))[0]
        torch.testing.assert_close(pixels[:, t], expected, atol=3 / 255, rtol=0)  # inpainting: within 2 levels


def test_the_largest_layer_is_painted_on_top(model):
    x_star = _layers(model, _frame((1, 1, 5, (1.0, 0.0, 0.0)), (10, 10, 3, (0.0, 1.0, 0.0))))
    _set_velocity(x_star, 1, [-8.0, -8.0, 0.0, 0.0])  # the smaller (green) square onto the larger (red) one
    pixels = model.spec.denormalize(x_star.video().detach())[0, :, 1]  # frame 1
    torch.testing.assert_close(pixels[:, 2:5, 2:5], _frame((1, 1, 5, (1.0, 0.0, 0.0)))[0, :, 2:5, 2:5], atol=3 / 255,
                               rtol=0)


def test_positive_spin_turns_clockwise_on_screen_and_growth_scales(model):
    left_red_right_green = _frame((5, 7, 3, (1.0, 0.0, 0.0)), (8, 7, 3, (0.0, 1.0, 0.0)))  # a 6 x 3 bar
    x_star = _layers(model, left_red_right_green)  # one layer: the two halves touch
    _set_velocity(x_star, 0, [0.0, 0.0, math.pi / 2, 0.0])
    green = (model.spec.denormalize(x_star.video().detach())[0, 1, 1] - GREY).clamp_min(0)  # frame 1, above grey
    rows = torch.arange(SIZE[1], dtype=torch.float32)[:, None]
    green_row = float((green * rows).sum() / green.sum())
    assert green_row > 9.5  # the right (green) half has turned to below the centre (row 8): clockwise
    x_star = _layers(model, _frame((6, 6, 4, (1.0, 1.0, 1.0))))
    _set_velocity(x_star, 0, [0.0, 0.0, 0.0, math.log(2.0)])
    white = model.spec.denormalize(x_star.video().detach())[0, 0] - GREY  # red channel above the background
    assert float(white[1].sum() / white[0].sum()) == pytest.approx(4.0, rel=0.1)  # twice as wide and high


def test_only_the_largest_layers_move_the_others_stay_still(model):
    big_and_small = _frame((1, 1, 5, (1.0, 0.0, 0.0)), (10, 10, 3, (0.0, 1.0, 0.0)))
    x_star = LayerParameterization((0, 1), SIZE, model.spec, torch.device("cpu"), big_and_small.expand(2, -1, -1, -1),
                                   moving_layers=1)
    (velocities,) = x_star.parameters()
    assert velocities.shape == (2, SIZE[0] - 1, 1, 4)  # one moving layer: the larger (red) square
    with torch.no_grad():
        velocities[:] = torch.tensor([1.0, 0.0, 0.5, 0.0])  # every layer that moves: right, turning
    pixels = model.spec.denormalize(x_star.video().detach())  # [2, 3, T, H, W]
    small = pixels[:, :, :, 10:13, 10:13]  # the green square, out of the red one's reach
    torch.testing.assert_close(small, small[:, :, :1].expand_as(small))
    assert float((pixels[:, :, -1, 1:6, 1:6] - pixels[:, :, 0, 1:6, 1:6]).abs().max()) > 0.5  # the red one moved


@pytest.mark.parametrize("count", [0, MAX_LAYERS + 1])
def test_moving_layers_outside_its_range_is_an_error(model, count):
    with pytest.raises(LeapsError, match="moving_layers must be in"):
        LayerParameterization((0,), SIZE, model.spec, torch.device("cpu"), _frame((2, 3, 4, (1.0, 1.0, 1.0))),
                               moving_layers=count)
    with pytest.raises(LeapsError, match="moving_layers must be in"):
        SynthesisConfig(moving_layers=count).validate()


def test_the_velocities_are_kept_within_their_bounds(model):
    x_star = _layers(model, _frame((2, 3, 4, (1.0, 1.0, 1.0))))
    _set_velocity(x_star, 0, [30.0, 40.0, 5.0, -1.0])
    x_star.project(lr=0.2)
    velocity = x_star.parameters()[0][0, 0, 0]
    fastest = MAX_SPEED * SIZE[1]
    torch.testing.assert_close(velocity, torch.tensor([0.6 * fastest, 0.8 * fastest, MAX_SPIN, -MAX_GROWTH]))


def test_motion_sparsity_soft_thresholds_every_velocity_by_its_share_of_the_learning_rate(model):
    x_star = LayerParameterization((0,), SIZE, model.spec, torch.device("cpu"), _frame((2, 3, 4, (1.0, 1.0, 1.0))),
                                   motion_sparsity=0.5)
    _set_velocity(x_star, 0, [0.3, -0.3, 0.05, -0.08])
    x_star.project(lr=0.2)  # threshold 0.5 * 0.2 = 0.1: larger values move 0.1 toward zero, smaller ones stop at 0
    torch.testing.assert_close(x_star.parameters()[0][0, 0, 0], torch.tensor([0.2, -0.2, 0.0, 0.0]))
    without = _layers(model, _frame((2, 3, 4, (1.0, 1.0, 1.0))))  # the default: off
    _set_velocity(without, 0, [0.3, -0.3, 0.05, -0.08])
    without.project(lr=0.2)
    torch.testing.assert_close(without.parameters()[0][0, 0, 0], torch.tensor([0.3, -0.3, 0.05, -0.08]))


def test_a_strong_motion_sparsity_leaves_the_still_frame(model, verifier):
    """Every velocity that the objective does not push hard enough ends at zero: x* is its first frame, held.
    One step: its learning rate (0.2) shrinks the velocities, not the rate after it (the cosine's end, 0)."""
    stimulus = generate_stimulus(0, seed=1, size=SIZE[1])
    config = SynthesisConfig.from_preset("embedded", size=SIZE, steps=1, restarts=1, motion_sparsity=100.0)
    result = synthesize(model, [Target(0, stimulus)], verifier=verifier, config=config,
                        acceleration=Acceleration(kernels="eager"))
    video = result.videos[0]
    torch.testing.assert_close(video, video[:, :1].expand_as(video))


def test_a_negative_motion_sparsity_is_an_error(model, tmp_path):
    with pytest.raises(LeapsError, match="motion_sparsity must be >= 0"):
        LayerParameterization((0,), SIZE, model.spec, torch.device("cpu"), _frame((2, 3, 4, (1.0, 1.0, 1.0))),
                               motion_sparsity=-0.1)
    with pytest.raises(LeapsError, match="motion_sparsity must be >= 0"):
        SynthesisConfig(motion_sparsity=-0.1).validate()
    with pytest.raises(LeapsError, match="motion_sparsity must be >= 0, got nan"):
        SynthesisConfig(motion_sparsity=float("nan")).validate()
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["synthesize", "--out", str(out), "--motion-sparsity", "-0.1"])
    assert result.exit_code == 2 and result.output.strip() == "error: motion_sparsity must be >= 0, got -0.1"
    assert not out.exists()


def test_the_layer_velocities_get_a_gradient_through_the_network(model):
    x_star = _layers(model, generate_stimulus(4, seed=1, size=SIZE[1])[:, 0][None])
    model(x_star.video()).logsumexp(-1).sum().backward()
    (velocities,) = x_star.parameters()
    assert velocities.grad is not None and bool(velocities.grad.abs().sum() > 0)


def test_a_run_under_layers_keeps_the_stimulus_objects_and_lowers_the_loss(model, verifier):
    config = SynthesisConfig.from_preset("embedded", size=SIZE, steps=5, parameterization="layers")
    stimulus = generate_stimulus(4, seed=3, size=SIZE[1])
    result = synthesize(model, [Target(4, stimulus)], verifier=verifier, config=config,
                        acceleration=Acceleration(kernels="eager"))
    assert result.config.parameterization == "layers"
    error = (result.videos[0, :, 0] - stimulus[:, 0]).abs()  # frame 0 is I, but where a soft edge breaks the
    assert float(error.mean()) < 0.005 and float(error.max()) < 0.1  # linear mixing model
    assert float(result.history["total"][-1].mean()) < float(result.history["total"][0].mean())


def test_a_pixel_a_quarter_covered_by_an_object_is_a_quarter_in_its_layer():
    frame = _frame((6, 6, 4, (1.0, 1.0, 1.0)))
    frame[..., 6:10, 10] = GREY + 0.25 * (1.0 - GREY)  # a column beside the square, a quarter white
    alphas = find_layers(frame)[0, 0]
    assert float(alphas[6:10, 10].mean()) == pytest.approx(0.25, abs=0.02) and float(alphas[6:10, 5].max()) == 0.0
