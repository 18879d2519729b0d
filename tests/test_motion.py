"""The motion figure: optical-flow signatures of known motions, and their similarities."""

import math

import numpy as np
import pytest
import torch

from leaps_engine.engine.embedded.generator import generate_stimulus
from leaps_engine.engine.motion import SIGNATURE, motion_signature, motion_similarity


def moving_square(dx: float, dy: float, frames: int = 8, size: int = 32) -> torch.Tensor:
    """A textured background with a bright 8-pixel square moving (dx, dy) pixels per frame: [3, T, H, W]."""
    generator = torch.Generator().manual_seed(0)
    background = 0.3 + 0.1 * torch.rand(3, 1, size, size, generator=generator)
    video = background.repeat(1, frames, 1, 1)
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    for t in range(frames):
        cx, cy = 12 + dx * t, 12 + dy * t
        inside = ((xs - cx).abs() < 4) & ((ys - cy).abs() < 4)
        video[:, t][:, inside] = torch.tensor([0.9, 0.8, 0.2])[:, None]
    return video


def test_a_translating_square_has_the_translation_as_its_signature():
    signature = dict(zip(SIGNATURE, motion_signature(moving_square(1.0, 0.0)), strict=True))
    assert signature["t_x"] == pytest.approx(1.0, abs=0.3)
    others = [abs(signature[key]) for key in ("t_y", "divergence", "curl", "vertical_change", "turning")]
    assert max(others) < 0.3 * signature["t_x"]
    down = dict(zip(SIGNATURE, motion_signature(moving_square(0.0, 1.0)), strict=True))
    assert down["t_y"] == pytest.approx(1.0, abs=0.3) and abs(down["t_x"]) < 0.3


def test_similarity_is_one_for_the_same_motion_and_negative_for_the_opposite():
    right, left = moving_square(1.0, 0.0), moving_square(-1.0, 0.0)
    values = motion_similarity(torch.stack([right, right, right]), torch.stack([right, moving_square(1.5, 0), left]))
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    assert values[1] > 0.9 and values[2] < -0.8


def test_generated_rotations_turn_opposite_ways():
    clockwise = [motion_signature(generate_stimulus("rotating clockwise", seed)) for seed in range(4)]
    counter = [motion_signature(generate_stimulus("rotating counterclockwise", seed)) for seed in range(4)]
    curl = SIGNATURE.index("curl")
    assert np.mean([s[curl] for s in clockwise]) > 0.2 > -0.2 > np.mean([s[curl] for s in counter])


def test_a_still_video_has_no_motion_and_no_similarity():
    still = moving_square(0.0, 0.0)
    assert np.allclose(motion_signature(still), 0.0)
    assert math.isnan(motion_similarity(still[None], moving_square(1.0, 0.0)[None])[0].item())


def test_a_video_must_have_two_frames():
    with pytest.raises(ValueError, match="T>=2"):
        motion_signature(torch.rand(3, 1, 32, 32))
