"""The embedded domain: the clip generator, the shipped classifier/verifier weights and their adapters."""

import json
import math
from importlib import resources

import pytest
import torch

from leaps_engine.engine.adapters import create_adapter
from leaps_engine.engine.embedded.generator import (
    CAMERA_SPEED,
    CLASS_NAMES,
    CLIP_FRAMES,
    CLIP_SIZE,
    generate_clips,
    generate_stimulus,
    render_scene,
    sample_scene,
    shape_coverage,
)

TEST_SEED = 777  # used neither by training (seed 0) nor by its held-out set (seed 10,000)
PANNING = 0.1  # a camera speed, image coordinates per frame
ACTOR = 2  # the actor's index among the scene's moving sprites (distractor, partner, actor)
PARTNER = 1


def test_clips_have_shape_range_and_are_deterministic():
    labels = torch.arange(len(CLASS_NAMES))
    clips = generate_clips(labels, torch.Generator().manual_seed(1))
    assert clips.shape == (len(CLASS_NAMES), 3, CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE)
    assert clips.dtype == torch.float32
    assert clips.min() >= 0.0 and clips.max() <= 1.0
    assert torch.equal(clips, generate_clips(labels, torch.Generator().manual_seed(1)))
    assert not torch.allclose(clips, generate_clips(labels, torch.Generator().manual_seed(2)))
    small = generate_clips(labels, torch.Generator().manual_seed(1), frames=4, size=20)
    assert small.shape == (len(CLASS_NAMES), 3, 4, 20, 20)


def test_every_class_renders_motion():
    clips = generate_clips(torch.arange(len(CLASS_NAMES)).repeat(4), torch.Generator().manual_seed(3))
    change = (clips[:, :, 1:] - clips[:, :, :-1]).abs().amax(dim=(1, 2, 3, 4))  # [N]
    assert (change > 0.1).all()


def test_stimulus_is_one_clip_determined_by_its_seed():
    stimulus = generate_stimulus(CLASS_NAMES.index("growing"), seed=5)
    assert stimulus.shape == (3, CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE)
    assert torch.equal(stimulus, generate_stimulus(CLASS_NAMES.index("growing"), seed=5))
    with pytest.raises(ValueError):
        generate_stimulus(len(CLASS_NAMES), seed=5)


def test_the_camera_is_still_by_default_and_pans_steadily_when_asked():
    labels = torch.arange(len(CLASS_NAMES))
    panning = sample_scene(labels, torch.Generator().manual_seed(TEST_SEED), camera_speed=PANNING)
    still = sample_scene(labels, torch.Generator().manual_seed(TEST_SEED))
    assert CAMERA_SPEED == 0.0
    assert not still.camera.any()
    assert torch.equal(still.movers.centre, panning.movers.centre)  # the camera's draws come last
    velocity = panning.camera[:, 1:] - panning.camera[:, :-1]  # [N, T - 1, 2]
    assert torch.allclose(velocity, velocity[:, :1].expand_as(velocity), atol=1e-6)
    assert (velocity[:, 0].norm(dim=-1) <= PANNING + 1e-6).all() and velocity.abs().max() > 0.01


def test_a_panning_camera_shifts_background_and_clutter_together():
    scene = sample_scene(torch.arange(len(CLASS_NAMES)), torch.Generator().manual_seed(TEST_SEED))
    pixel = 2.0 / CLIP_SIZE  # a pan of whole pixels, (2, 1) per frame
    scene.camera = torch.arange(CLIP_FRAMES)[None, :, None] * torch.tensor([2 * pixel, pixel]).expand(
        len(CLASS_NAMES), CLIP_FRAMES, 2)
    scene.movers.visible[:] = False
    video = render_scene(scene)  # [N, 3, T, H, W]
    dx, dy = 2 * (CLIP_FRAMES - 1), CLIP_FRAMES - 1  # the last frame is the first seen dx right, dy down
    assert torch.allclose(video[:, :, -1, :-dy, :-dx], video[:, :, 0, dy:, dx:], atol=1e-4)
    assert not torch.allclose(video[:, :, -1], video[:, :, 0], atol=1e-2)


def _track(class_name: str, sprite: int = ACTOR, count: int = 8) -> dict[str, torch.Tensor]:
    """Centroid ``[N, T, 2]`` (pixels, y down), area ``[N, T]`` and the angle ``[N, T]`` of the first-colour
    half's centroid around the centroid (grows clockwise on screen) of one sprite in ``count`` clips."""
    labels = torch.full((count,), CLASS_NAMES.index(class_name))
    scene = sample_scene(labels, torch.Generator().manual_seed(TEST_SEED))
    coverage, first_colour = shape_coverage(scene.movers, sprite, CLIP_SIZE)  # [N, T, H, W]
    pixels = torch.arange(CLIP_SIZE, dtype=torch.float32)
    y, x = torch.meshgrid(pixels, pixels, indexing="ij")

    def centroid(weight: torch.Tensor) -> torch.Tensor:
        mass = weight.sum((2, 3))
        return torch.stack([(weight * x).sum((2, 3)) / mass, (weight * y).sum((2, 3)) / mass], -1)

    centre = centroid(coverage)
    half = centroid(coverage * first_colour) - centre
    return {"centre": centre, "area": coverage.sum((2, 3)), "angle": torch.atan2(half[..., 1], half[..., 0])}


@pytest.mark.parametrize(
    ("class_name", "axis", "sign"),
    [("moving right", 0, 1), ("moving left", 0, -1), ("moving down", 1, 1), ("moving up", 1, -1)],
)
def test_translations_move_the_actor_that_way(class_name, axis, sign):
    centre = _track(class_name)["centre"]
    assert (sign * (centre[:, -1, axis] - centre[:, 0, axis]) > 3.0).all()


@pytest.mark.parametrize(("class_name", "sign"), [("rotating clockwise", 1), ("rotating counterclockwise", -1)])
def test_rotations_turn_the_pattern_that_way(class_name, sign):
    angle = _track(class_name)["angle"]
    step = torch.remainder(angle[:, 1:] - angle[:, :-1] + math.pi, 2 * math.pi) - math.pi  # wrapped to [-pi, pi)
    assert (sign * step > 0.2).all()


def test_growing_and_shrinking_change_the_area():
    growing, shrinking = _track("growing")["area"], _track("shrinking")["area"]
    assert (growing[:, -1] > 2 * growing[:, 0]).all()
    assert (shrinking[:, 0] > 2 * shrinking[:, -1]).all()


def test_pairs_approach_or_separate_and_bouncing_turns_at_the_floor():
    def gap(class_name: str) -> torch.Tensor:  # [N, T] pixels between the actor and its partner
        return (_track(class_name)["centre"] - _track(class_name, PARTNER)["centre"]).norm(dim=-1)

    assert (gap("approaching")[:, -1] < gap("approaching")[:, 0] - 3.0).all()
    assert (gap("separating")[:, -1] > gap("separating")[:, 0] + 3.0).all()
    lowest_frame = _track("bouncing")["centre"][..., 1].argmax(1)  # y grows downwards
    assert ((lowest_frame > 0) & (lowest_frame < CLIP_FRAMES - 1)).all()


@pytest.mark.parametrize(("name", "network"), [("embedded", "classifier"), ("embedded_verifier", "verifier"),
                                             ("embedded_evaluator", "evaluator")])
def test_shipped_weights_classify_fresh_clips_as_recorded(name, network):
    """At least 90% (the classifier, verifier and evaluator hold 98.9%, 98.9% and 99.5% held-out), and
    within 5 points of the held-out accuracy that training.json records for these weights (600 clips here)."""
    record = resources.files("leaps_engine.engine.embedded") / "weights" / "training.json"
    recorded = json.loads(record.read_text())[network]["held_out_accuracy"]
    adapter = create_adapter(name)
    labels = torch.arange(len(CLASS_NAMES)).repeat(50)
    clips = generate_clips(labels, torch.Generator().manual_seed(TEST_SEED))
    with torch.no_grad():
        accuracy = (adapter(adapter.spec.normalize(clips)).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.9 and abs(accuracy - recorded) <= 0.05


def test_training_json_records_that_each_network_knows_its_domain():
    """The target of the shipped networks: >= 95% held-out, every class >= 85% (2,400 clips, unseen seed)."""
    record = json.loads((resources.files("leaps_engine.engine.embedded") / "weights" / "training.json").read_text())
    for network in ("classifier", "verifier", "evaluator"):
        assert record[network]["held_out_accuracy"] >= 0.95, network
        assert min(record[network]["per_class_accuracy"].values()) >= 0.85, network
        assert record[network]["camera_speed"] == CAMERA_SPEED, network


@pytest.mark.parametrize("name", ["embedded", "embedded_verifier", "embedded_evaluator"])
def test_adapters_give_taps_and_input_gradients_only(name):
    adapter = create_adapter(name)
    assert adapter.spec.class_names == CLASS_NAMES
    video = torch.randn(2, 3, CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE, requires_grad=True)
    logits, taps = adapter.forward_with_taps(video)
    assert logits.shape == (2, len(CLASS_NAMES))
    assert len(taps) == len(adapter.taps) == 4
    for tap in taps:
        assert tap.dim() == 4 and tap.shape[0] == 2  # [B, C, T', N]
    assert taps[-1].shape[2] >= 2
    (logits.sum() + sum(tap.mean() for tap in taps)).backward()
    assert video.grad is not None and video.grad.abs().sum() > 0
    assert all(parameter.grad is None and not parameter.requires_grad for parameter in adapter.parameters())


@pytest.mark.parametrize("name", ["embedded", "embedded_verifier", "embedded_evaluator"])
def test_adapters_take_the_declared_minimum_size(name):
    adapter = create_adapter(name, weights="random")
    spec = adapter.spec
    video = torch.randn(1, 3, spec.min_frames, spec.min_size, spec.min_size)
    assert adapter(video).shape == (1, len(CLASS_NAMES))


def test_checkpoint_path_loads_the_same_weights():
    shipped = resources.files("leaps_engine.engine.embedded") / "weights" / "classifier.pt"
    with resources.as_file(shipped) as path:
        from_path = create_adapter("embedded", weights=str(path))
    video = torch.randn(1, 3, CLIP_FRAMES, CLIP_SIZE, CLIP_SIZE)
    with torch.no_grad():
        assert torch.equal(from_path(video), create_adapter("embedded")(video))
        assert not torch.equal(from_path(video), create_adapter("embedded", weights="random")(video))


def test_pgd_clips_stay_in_the_ball_raise_the_loss_and_leave_batchnorm_alone():
    from leaps_engine.engine.embedded.train import adversarial_clips, normalise

    net = create_adapter("embedded").model
    labels = torch.arange(0, len(CLASS_NAMES), 3)
    clips = generate_clips(labels, torch.Generator().manual_seed(TEST_SEED))
    before = {name: value.clone() for name, value in net.state_dict().items()}
    net.train()
    attacked = adversarial_clips(net, clips, labels, 0.03, 3, torch.Generator().manual_seed(0))
    assert net.training  # the attack runs in eval mode and restores the mode
    assert (attacked - clips).abs().max() <= 0.03 + 1e-6 and attacked.min() >= 0 and attacked.max() <= 1
    net.eval()
    with torch.no_grad():
        clean_loss = torch.nn.functional.cross_entropy(net(normalise(clips)), labels)
        attacked_loss = torch.nn.functional.cross_entropy(net(normalise(attacked)), labels)
    assert attacked_loss > clean_loss + 0.1
    assert all(torch.equal(value, net.state_dict()[name]) for name, value in before.items())
