"""Grid search of lambda_1, lambda_L and r (Supp. S2): the grid, the ranking, the reports, bad input."""

import json

import pytest
from click.testing import CliRunner

from leaps_engine.cli import main
from leaps_engine.engine.tuning import PAPER_GRID, Trial, best_trial, grid_points
from leaps_engine.errors import LeapsError


def test_paper_grid_has_125_points_in_order():
    points = grid_points(PAPER_GRID)
    assert len(points) == 125
    assert points[0] == {"lambda_first": 0.5, "lambda_last": 0.1, "r": 1e-3}
    assert points[1] == {"lambda_first": 0.5, "lambda_last": 0.1, "r": 2.5e-3}
    with pytest.raises(LeapsError, match="no value for r"):
        grid_points({"lambda_first": (1.0,), "lambda_last": (0.2,), "r": ()})


def test_best_trial_ranks_verifier_top1_then_probability_then_model():
    def trial(v, p, m):
        return Trial(1.0, 0.2, 1e-3, verifier_top1=v, verifier_target_prob=p, model_top1=m, seconds=1.0)

    trials = [trial(50, 0.9, 100), trial(60, 0.1, 90), trial(60, 0.2, 80), trial(60, 0.2, 95)]
    assert best_trial(trials) is trials[3]


def test_tune_command_writes_the_grid_and_the_winner(tmp_path):
    out = tmp_path / "tune"
    result = CliRunner().invoke(main, ["tune", "--class", "0", "--class", "5", "--steps", "3", "--lambda-first", "1.0",
                                       "--lambda-first", "0.5", "--lambda-last", "0.2", "--r", "0.01", "--restarts", "1",
                                       "--motion-sparsity", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "tune.json").read_text())
    assert len(report["trials"]) == 2 and report["grid"]["lambda_first"] == [1.0, 0.5] and report["restarts"] == 1
    assert report["motion_sparsity"] == 0.0
    assert report["best"] in report["trials"] and report["command"].startswith("leaps-engine")
    assert all(0 <= t["verifier_top1"] <= 100 and 0 <= t["model_top1"] <= 100 for t in report["trials"])
    assert "(best)" in (out / "tune.md").read_text()
    assert "best: lambda_first=" in result.output


def test_tune_without_a_verifier_is_a_user_error(tmp_path):
    result = CliRunner().invoke(main, ["tune", "--verifier", "none", "--steps", "1", "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "scores each setting on the verifier" in result.stderr


def test_tune_with_fewer_than_one_restart_is_a_user_error(tmp_path):
    out = tmp_path / "t"
    result = CliRunner().invoke(main, ["tune", "--restarts", "0", "--steps", "1", "--out", str(out)])
    assert result.exit_code == 2 and result.stderr.strip() == "error: restarts must be >= 1, got 0"
    assert not out.exists()
