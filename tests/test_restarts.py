"""Random restarts: each restart is the run of its own seed, and the kept one has the lowest loss."""

import pytest
import torch
from click.testing import CliRunner

from leaps_engine import SynthesisConfig, Target, synthesize
from leaps_engine.cli import main
from leaps_engine.engine.embedded.generator import generate_stimulus
from leaps_engine.engine.motion_layers import LayerParameterization
from leaps_engine.engine.restarts import best_rows, restart_seed
from leaps_engine.errors import LeapsError


def _config(**overrides):
    return SynthesisConfig.from_preset("embedded", **{"steps": 6, "seed": 40, **overrides})


def test_restart_zero_is_the_video_seed_and_the_others_differ():
    assert restart_seed(40, 0) == 40
    seeds = {restart_seed(seed, k) for seed in (40, 41, -3) for k in range(4)}
    assert len(seeds) == 12  # no two (video, restart) pairs share a seed; negative seeds work as in torch
    assert restart_seed(40, 1) == restart_seed(40, 1)


def test_best_rows_takes_each_videos_lowest_loss_video_major():
    assert best_rows(torch.tensor([0.3, 0.1, 0.2, 0.5, 0.4, 0.6]), restarts=3).tolist() == [1, 4]
    assert best_rows(torch.tensor([0.3, 0.1, 0.2, 0.5]), restarts=1).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("parameterization", ["layers", "pixel"])
def test_the_kept_restart_is_its_own_seeds_run_with_the_lowest_loss(model, verifier, parameterization):
    targets = [Target(4, generate_stimulus(4, seed=3)), Target(9, generate_stimulus(9, seed=5))]
    config = _config(parameterization=parameterization, restarts=3)
    result = synthesize(model, targets, verifier=verifier, config=config)
    assert result.videos.shape == (2, 3, *config.size) and result.restart_losses.shape == (2, 3)
    assert all(values.shape == (6, 2) for values in result.history.values())
    assert result.seeds == [40, 41]
    for video, target in enumerate(targets):
        alone = [synthesize(model, [Target(target.label, target.stimulus, seed=restart_seed(40 + video, k))],
                            verifier=verifier, config=config.replace(restarts=1)) for k in range(3)]
        total = torch.stack([run.history["total"][-1, 0] for run in alone])
        torch.testing.assert_close(result.restart_losses[video], total, atol=1e-5, rtol=1e-4)
        kept = int(total.argmin())
        assert result.kept_restarts[video] == kept
        torch.testing.assert_close(result.videos[video], alone[kept].videos[0], atol=1e-3, rtol=0)
        torch.testing.assert_close(result.history["total"][:, video], alone[kept].history["total"][:, 0])


def test_one_restart_is_the_single_run(model, verifier):
    target = Target(2, generate_stimulus(2, seed=8))
    single = synthesize(model, [target], verifier=verifier, config=_config(restarts=1))
    assert single.kept_restarts == [0] and single.restart_losses.shape == (1, 1)
    assert torch.equal(single.restart_losses[0], single.history["total"][-1])


def test_callbacks_see_one_row_per_video(model):
    shapes = []
    synthesize(model, [Target(0, generate_stimulus(0, seed=0))], config=_config(steps=3, restarts=2),
               callbacks=[lambda state: shapes.append((state.videos().shape[0], state.target_probs.shape,
                                                       state.losses["priming"].shape))])
    assert shapes == [(1, torch.Size([1]), torch.Size([1]))] * 3


def test_fewer_than_one_restart_is_an_error(tmp_path):
    with pytest.raises(LeapsError, match="restarts must be >= 1"):
        SynthesisConfig(restarts=0).validate()
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["synthesize", "--out", str(out), "--restarts", "0"])
    assert result.exit_code == 2 and result.output.strip() == "error: restarts must be >= 1, got 0"
    assert not out.exists()


def test_restarts_share_their_videos_layers_and_a_bad_stimulus_is_named_by_video(model):
    good = generate_stimulus(0, seed=1)[:, 0]
    flat = torch.full_like(good, 0.4)  # no object to move
    x_star = LayerParameterization([1, 2, 3, 4], (4, 32, 32), model.spec, torch.device("cpu"),
                                   torch.stack([good, good, good, good]), restarts=2)
    alone = LayerParameterization([1], (4, 32, 32), model.spec, torch.device("cpu"), good[None])
    torch.testing.assert_close(x_star.video()[0], alone.video()[0])  # restart 0 of video 0 is its own run
    with pytest.raises(LeapsError, match="first frame of video 1's stimulus"):
        LayerParameterization([1, 2, 3, 4], (4, 32, 32), model.spec, torch.device("cpu"),
                              torch.stack([good, good, flat, flat]), restarts=2)


def test_batch_statistics_would_mix_restarts_and_are_refused():
    with pytest.raises(LeapsError, match="would mix a video's restarts"):
        SynthesisConfig(restarts=2, bn_stats="batch").validate()
    SynthesisConfig(restarts=1, bn_stats="batch").validate()
