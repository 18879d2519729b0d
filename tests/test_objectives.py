"""Each loss term against values computed by hand on small tensors."""

import math

import pytest
import torch
from torch import nn

from leaps_engine.engine import objectives
from leaps_engine.kernels.bn_stats import bn_statistics_loss_ref
from leaps_engine.kernels.priming import jvs_ref, priming_distance_ref, tap_priming_loss_ref


def test_jvs_is_one_only_for_equal_vectors():
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    # 2<a,b> / (|a|^2 + |b|^2): 2/2, 4/5, 0/2, 50/50
    assert torch.allclose(jvs_ref(a, b), torch.tensor([1.0, 0.8, 0.0, 1.0]))


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        ("jvs", 1.0 - 2 * 1.0 / (5.0 + 1.0)),  # <a,b> = 1, |a|^2 = 5, |b|^2 = 1
        ("cos", 1.0 - 1.0 / math.sqrt(5.0)),
        ("l1", (0.0 + 2.0) / 2),
        ("l2", math.sqrt((0.0 + 4.0) / 2)),
    ],
)
def test_priming_distances_by_hand(distance, expected):
    a = torch.tensor([[1.0, 2.0]])
    b = torch.tensor([[1.0, 0.0]])
    assert priming_distance_ref(a, b, distance).item() == pytest.approx(expected, rel=1e-6)


def test_unknown_priming_distance_raises():
    with pytest.raises(ValueError, match="unknown priming distance"):
        priming_distance_ref(torch.ones(1, 2), torch.ones(1, 2), "hamming")


def test_tap_priming_loss_uses_the_space_time_mean():
    tap = torch.tensor([1.0, 3.0, 5.0, 7.0]).view(1, 1, 2, 2).repeat(1, 2, 1, 1)  # [B=1, C=2, T=2, N=2]
    tap[:, 1] *= 2  # channel means 4 and 8
    target = torch.tensor([[4.0, 8.0]])
    assert tap_priming_loss_ref(tap, target).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.tensor([[8.0, 4.0]])  # JVS = 2 * 64 / 160 = 0.8
    assert tap_priming_loss_ref(tap, other).item() == pytest.approx(0.2, rel=1e-6)


def test_lambda_schedule_is_linear_from_first_to_last():
    assert objectives.priming_weights(5, 1.0, 0.2) == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert objectives.priming_weights(2, 0.75, 0.1) == pytest.approx([0.75, 0.1])
    assert objectives.priming_weights(1, 0.625, 0.1) == pytest.approx([0.625])


@pytest.mark.parametrize(("taps", "fraction", "kept"), [(10, 1.0, 10), (10, 0.6, 6), (7, 0.2, 1), (3, 0.2, 1), (5, 0.8, 4)])
def test_priming_layers_keep_the_first_floor_share(taps, fraction, kept):
    assert objectives.priming_tap_count(taps, fraction) == kept


def test_priming_loss_is_weighted_mean_over_taps():
    tap_a = torch.tensor([[2.0, 0.0]]).view(1, 2, 1, 1)  # mean (2, 0)
    tap_b = torch.tensor([[1.0, 1.0]]).view(1, 2, 1, 1)  # mean (1, 1)
    target_a = torch.tensor([[1.0, 0.0]])  # 1 - JVS = 0.2
    target_b = torch.tensor([[1.0, -1.0]])  # JVS = 0 -> 1
    loss = objectives.priming_loss([tap_a, tap_b], [target_a, target_b], [1.0, 0.5])
    assert loss.item() == pytest.approx((1.0 * 0.2 + 0.5 * 1.0) / 2, rel=1e-6)


def _frames(values, channels=1, positions=1):
    """A tap [1, C, T, N] whose frame t is the constant values[t]."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, -1, 1).expand(1, channels, len(values), positions)


def test_coherence_pulls_consecutive_and_pushes_other_pairs():
    # pairs (0,1): 0.5, (1,2): 1.5 consecutive; (0,2): d=2 > margin -> 0
    assert objectives.temporal_coherence(_frames([0.0, 0.5, 2.0])).item() == pytest.approx(2.0 / 3)
    # (0,1): 0.2, (1,2): 0.1; (0,2): max(0, 1 - 0.3) = 0.7
    assert objectives.temporal_coherence(_frames([0.0, 0.2, 0.3])).item() == pytest.approx(1.0 / 3)


def test_coherence_distance_is_a_mean_over_channels_and_positions():
    tap = torch.zeros(1, 2, 2, 3)
    tap[0, 0, 1, :] = 3.0  # half the entries of frame 1 differ by 3 -> mean abs diff 1.5
    assert objectives.temporal_coherence(tap).item() == pytest.approx(1.5)


def test_coherence_uses_margin_and_counts_all_pairs():
    # T'=4: 3 consecutive pairs at distance 0, 3 others at 0 -> each adds the margin 2.0
    assert objectives.coherence_pair_count(4) == 6
    assert objectives.temporal_coherence(_frames([1.0] * 4), margin=2.0).item() == pytest.approx(3 * 2.0 / 6)


def test_coherence_is_zero_without_two_frames():
    tap = torch.randn(3, 4, 1, 5, requires_grad=True)
    loss = objectives.temporal_coherence(tap)
    assert loss.shape == (3,) and torch.equal(loss, torch.zeros(3))


def test_bn_statistics_by_hand():
    activation = torch.tensor([1.0, 3.0]).view(1, 1, 1, 1, 2)  # mean 2, biased variance 1
    loss = bn_statistics_loss_ref(activation, torch.tensor([0.0]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(2.0)
    two_channels = torch.tensor([[1.0, 3.0], [0.0, 0.0]]).view(1, 2, 1, 1, 2)  # means (2, 0), vars (1, 0)
    loss = bn_statistics_loss_ref(two_channels, torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(3.0 + math.sqrt(2.0))  # |(0, -3)| + |(1, -1)|


def test_bn_statistics_per_video_versus_batch():
    batch = torch.stack([torch.full((1, 1, 1, 2), 1.0), torch.full((1, 1, 1, 2), 3.0)])  # [2, 1, 1, 1, 2]
    per_video = bn_statistics_loss_ref(batch, torch.tensor([2.0]), torch.tensor([0.0]))
    assert per_video.tolist() == pytest.approx([1.0, 1.0])  # each mean is 1 away, each variance 0
    whole = bn_statistics_loss_ref(batch, torch.tensor([2.0]), torch.tensor([0.0]), per_video=False)
    assert whole.tolist() == pytest.approx([1.0, 1.0])  # batch mean 2 (0 away), batch variance 1


def test_feature_statistics_sums_over_layers():
    bn = nn.BatchNorm3d(1).eval()  # running mean 0, var 1
    x = torch.tensor([1.0, 3.0]).view(1, 1, 1, 1, 2)
    assert objectives.feature_statistics_loss([(bn, x), (bn, x)]).item() == pytest.approx(4.0)


def test_cross_entropy_on_logits():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax (0.25, 0.75)
    assert objectives.cross_entropy(logits, torch.tensor([1])).item() == pytest.approx(-math.log(0.75))


def test_total_variation_and_l2_prior_by_hand():
    constant = torch.full((2, 3, 4, 5, 6), 0.7)
    assert torch.equal(objectives.total_variation(constant), torch.zeros(2))
    ramp = torch.arange(6.0).expand(1, 3, 4, 5, 6).contiguous()  # +1 per step along w only
    torch.testing.assert_close(objectives.total_variation(ramp), torch.tensor([1.0]))
    frames = torch.zeros(1, 3, 2, 2, 2)
    frames[:, :, 1] = 2.0  # one jump of 2 along t
    torch.testing.assert_close(objectives.total_variation(frames), torch.tensor([4.0]))
    torch.testing.assert_close(objectives.l2_prior(torch.full((1, 3, 2, 2, 2), -3.0)), torch.tensor([9.0]))
