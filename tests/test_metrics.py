"""Evaluation metrics against values known in closed form or computed by hand."""

import math

import pytest
import torch

from leaps_engine.engine import metrics
from leaps_engine.engine.metrics import (
    MAX_PSNR_DB,
    consecutive_frame_psnr,
    consecutive_frame_ssim,
    inception_score,
    mean_target_probability,
    ssim_window,
    topk_accuracy,
)


def constant_video(*values: float, size: int = 8) -> torch.Tensor:
    """``[1, 3, T, size, size]`` whose frame t is filled with ``values[t]``."""
    return torch.tensor(values).view(1, 1, -1, 1, 1).expand(1, 3, len(values), size, size).clone()


@pytest.mark.parametrize("classes", [1, 5, 7])
def test_inception_score_of_uniformly_spread_one_hot_predictions_is_the_class_count(classes):
    probs = torch.eye(classes).repeat(3, 1)  # [3K, K], every class three times
    mean, std = inception_score(probs, splits=1)
    assert mean == pytest.approx(classes, rel=1e-9) and std == 0.0
    mean, std = inception_score(probs, splits=3)  # each consecutive chunk holds every class once
    assert mean == pytest.approx(classes, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_of_identical_rows_is_one():
    probs = torch.tensor([0.2, 0.5, 0.3]).repeat(6, 1)
    assert inception_score(probs, splits=2) == pytest.approx((1.0, 0.0), abs=1e-9)


def test_inception_score_two_by_two_by_hand():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    marginal = (0.55, 0.45)
    kl_first = 0.9 * math.log(0.9 / marginal[0]) + 0.1 * math.log(0.1 / marginal[1])
    kl_second = 0.2 * math.log(0.2 / marginal[0]) + 0.8 * math.log(0.8 / marginal[1])
    expected = math.exp((kl_first + kl_second) / 2)
    mean, std = inception_score(probs, splits=1)
    assert mean == pytest.approx(expected, rel=1e-9) and std == 0.0
    # a chunk needs at least K rows, so two rows of two classes stay one chunk whatever the splits
    assert inception_score(probs, splits=2) == pytest.approx((expected, 0.0), rel=1e-9)


def test_inception_score_std_is_the_population_std_over_chunks():
    chunk_a = torch.eye(2)  # IS 2
    chunk_b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # IS 1
    mean, std = inception_score(torch.cat([chunk_a, chunk_b]), splits=2)
    assert mean == pytest.approx(1.5) and std == pytest.approx(0.5)  # np.std([2, 1]) = 0.5
    assert all(math.isnan(v) for v in inception_score(torch.empty(0, 3)))


def test_topk_accuracy_counts_missing_targets_as_wrong():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1]])
    targets = torch.tensor([0, 1, -1, 2])
    assert topk_accuracy(probs, targets, 1) == pytest.approx(25.0)
    assert topk_accuracy(probs, targets, 2) == pytest.approx(50.0)
    assert topk_accuracy(probs, targets, 5) == pytest.approx(75.0)  # k capped at K; -1 still wrong
    assert mean_target_probability(probs, targets) == pytest.approx((0.7 + 0.3 + 0.0 + 0.1) / 4)


def test_psnr_of_constant_frames_and_identical_frames_clamped():
    psnr = consecutive_frame_psnr(constant_video(0.5, 0.6))  # MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert psnr.shape == (1,) and psnr.item() == pytest.approx(20.0, abs=1e-4)
    assert consecutive_frame_psnr(constant_video(0.3, 0.3, 0.3)).item() == MAX_PSNR_DB
    # the mean over pairs: one identical pair (100 dB) and one 20 dB pair
    assert consecutive_frame_psnr(constant_video(0.5, 0.5, 0.6)).item() == pytest.approx(60.0, abs=1e-4)


def test_ssim_of_identical_and_negated_frames():
    torch.manual_seed(0)
    frame = torch.rand(3, 1, 16, 16)
    still = frame.expand(3, 4, 16, 16)[None]  # [1, 3, 4, 16, 16]
    assert consecutive_frame_ssim(still).item() == pytest.approx(1.0, abs=1e-5)
    flicker = torch.cat([frame, 1 - frame], dim=1)[None]  # frame, then its negation
    assert consecutive_frame_ssim(flicker).item() < -0.5


@pytest.mark.parametrize("side", [1, 2, 5, 8])
def test_tiny_frames_work(side):
    torch.manual_seed(side)
    videos = torch.rand(2, 3, 3, side, side)
    ssim = consecutive_frame_ssim(videos)
    psnr = consecutive_frame_psnr(videos)
    assert ssim.shape == psnr.shape == (2,)
    assert torch.isfinite(ssim).all() and torch.isfinite(psnr).all()
    assert consecutive_frame_ssim(videos[:, :, :1].expand(2, 3, 3, side, side)) == pytest.approx(1.0, abs=1e-5)


def test_ssim_window_shrinks_to_the_frame():
    assert ssim_window(224, 224) == (11, 1.5)
    assert ssim_window(8, 32)[0] == 7
    assert ssim_window(2, 2)[0] == 1


def test_single_frame_videos_give_nan():
    videos = torch.rand(2, 3, 1, 8, 8)
    assert torch.isnan(consecutive_frame_psnr(videos)).all()
    assert torch.isnan(consecutive_frame_ssim(videos)).all()


def test_high_frequency_share_tells_noise_from_smooth_videos():
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand((2, 3, 4, 64, 64), generator=generator)
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    smooth = (0.5 + 0.4 * torch.sin(2 * math.pi * (x + 2 * y) / 64)).expand(1, 3, 4, 64, 64)
    checkerboard = ((x + y) % 2).expand(1, 3, 4, 64, 64)
    shares = metrics.high_frequency_share(torch.cat([noise, smooth, checkerboard]))
    assert abs(float(shares[0]) - (1 - math.pi * 0.25**2)) < 0.03  # white noise: the area outside r = 0.25
    assert float(shares[2]) < 1e-6 and float(shares[3]) > 0.999
    assert torch.isnan(metrics.high_frequency_share(torch.full((1, 3, 2, 8, 8), 0.5)))[0]


def test_evaluate_reports_the_high_frequency_ratio_of_noise_over_its_stimulus(tmp_path):
    import json

    from leaps_engine.evaluation import evaluate_results

    noise = torch.rand((3, 4, 32, 32), generator=torch.Generator().manual_seed(1))
    stimulus = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(3, 4, 32, 32).clone()
    folder = tmp_path / "run"
    (folder / "clip").mkdir(parents=True)
    torch.save(noise, folder / "clip" / "video.pt")
    torch.save(stimulus, folder / "clip" / "stimulus.pt")
    summary = {"model": {"name": "embedded", "weights": "embedded"}, "verifier": None, "config": {},
               "clips": [{"target_class": "moving right", "tensor": "clip/video.pt",
                          "stimulus_tensor": "clip/stimulus.pt"}]}
    (folder / "result.json").write_text(json.dumps(summary))
    _, (row,) = evaluate_results([str(folder)], splits=1, group_by="model")
    assert row["high_frequency_share_synthesized"] > 0.7
    assert row["high_frequency_ratio"] == row["high_frequency_share_synthesized"] / row["high_frequency_share_stimulus"]
    assert row["high_frequency_ratio"] > 10


def test_frame_pixel_std_is_zero_for_grey_and_halves_with_the_contrast():
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(2, 3, 4, 16, 16, generator=generator)
    low_contrast = 0.5 + (video - 0.5) / 2
    spreads = metrics.frame_pixel_std(torch.cat([video, low_contrast, torch.full((1, 3, 4, 16, 16), 0.5)]))
    assert spreads[0] == pytest.approx(1 / 12**0.5, rel=0.05)  # uniform pixels
    torch.testing.assert_close(spreads[2:4], spreads[0:2] / 2)
    assert spreads[4] == 0
