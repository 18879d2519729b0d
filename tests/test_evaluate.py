"""``leaps-engine evaluate`` end to end on result folders of the embedded model, and its bad-input cases."""

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from leaps_engine.cli import main
from leaps_engine.cli.console import user_errors as _user_errors
from leaps_engine.cli.evaluate import run_evaluate
from leaps_engine.errors import LeapsError
from leaps_engine.outputs.results import find_result_files

GROUP_KEYS = ["model", "method", "objective", "distance", "priming_layers", "verifier"]
ROW_KEYS = {"method", "objective", "n_runs", "n_videos", "top1_model", "top5_model", "top1_verifier", "top5_verifier",
            "top1_evaluator", "top5_evaluator", "inception_score_model", "inception_score_verifier",
            "inception_score_evaluator", "psnr_synthesized", "ssim_synthesized", "psnr_stimulus", "ssim_stimulus", "motion_similarity",
            "motion_classes", "motion_classes_matched", "pixel_std_ratio", "pixel_std_ratio_min"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A parent folder with two result folders of two clips each (3 steps on the embedded model).

    The second folder is a copy of the first, to keep the suite fast: same settings, so one group of 4 videos.
    """
    parent = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(main, ["synthesize", "--class", "0", "--class", "3", "--steps", "3",
                                       "--out", str(parent / "a")])
    assert result.exit_code == 0, result.output
    shutil.copytree(parent / "a", parent / "b")
    return parent


def evaluate(paths, capsys, **options) -> tuple[list[dict], str]:
    rows = run_evaluate(paths=[str(p) for p in paths], **options)
    return rows, capsys.readouterr().out


def recorded_clips(*folders: Path) -> list[dict]:
    return [clip for folder in folders for clip in json.loads((folder / "result.json").read_text())["clips"]]


def test_json_groups_both_runs_and_matches_the_recorded_predictions(runs, capsys, tmp_path):
    out = tmp_path / "table.json"
    rows, printed = evaluate([runs], capsys, evaluator="embedded_verifier", output_format="json", out=str(out))
    assert json.loads(printed) == json.loads(out.read_text()) == rows
    [row] = rows
    assert ROW_KEYS | set(GROUP_KEYS) <= set(row)
    assert (row["model"], row["method"], row["objective"], row["verifier"]) == ("embedded", "leaps", "full",
                                                                               "embedded_verifier")
    assert row["n_runs"] == 2 and row["n_videos"] == 4
    for role in ("model", "verifier", "evaluator"):
        assert 0.0 <= row[f"top1_{role}"] <= row[f"top5_{role}"] <= 100.0
        assert set(row[f"inception_score_{role}"]) == {"mean", "std"}
    clips = recorded_clips(runs / "a", runs / "b")
    expected = 100.0 * sum(c["model_top1"] == c["target_class"] for c in clips) / len(clips)
    assert row["top1_model"] == pytest.approx(expected)
    assert row["top1_evaluator"] == pytest.approx(row["top1_verifier"])  # the evaluator is the verifier here
    assert row["psnr_synthesized"] is not None and -1.0 <= row["ssim_synthesized"] <= 1.0
    assert -1.0 <= row["motion_similarity"] <= 1.0 and row["motion_classes"] == 2
    per_class = row["motion_similarity_per_class"]
    assert set(per_class) == {c["target_class"] for c in clips} and len(per_class) == 2
    assert sum(per_class.values()) / 2 == pytest.approx(row["motion_similarity"])  # two videos per class
    assert row["motion_classes_matched"] == sum(mean >= 0.4 for mean in per_class.values())
    assert 0 < row["pixel_std_ratio_min"] <= row["pixel_std_ratio"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_runs_with_other_settings_form_their_own_group(runs, capsys, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(runs / "a", other)
    summary = json.loads((other / "result.json").read_text())
    summary["config"].update(method="deepdream", distance="cos")
    for clip in summary["clips"]:
        clip.pop("stimulus_tensor", None)
    (other / "result.json").write_text(json.dumps(summary))
    rows, _ = evaluate([runs / "a", other], capsys, output_format="json")
    assert [(r["method"], r["distance"], r["n_videos"]) for r in rows] == [("leaps", "jvs", 2), ("deepdream", "cos", 2)]
    assert rows[1]["psnr_stimulus"] is None and rows[1]["ssim_stimulus"] is None
    assert rows[0]["top1_evaluator"] is None and rows[0]["inception_score_evaluator"] is None
    _, text = evaluate([other, runs / "a"], capsys, output_format="csv")  # the first group has no motion
    csv_rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["method"] for r in csv_rows] == ["deepdream", "leaps"]
    motion_columns = [key for key in csv_rows[1] if key.startswith("motion_similarity_per_class_")]
    assert len(motion_columns) == 2 and all(csv_rows[0][key] == "" for key in motion_columns)
    rows, _ = evaluate([runs / "a", other], capsys, output_format="json", group_by="model")
    assert [(r["model"], r["n_runs"]) for r in rows] == [("embedded", 2)]


def test_markdown_and_csv(runs, capsys):
    _, text = evaluate([runs], capsys, evaluator="embedded_verifier", command="leaps-engine evaluate X")
    lines = text.splitlines()
    assert "embedded_verifier" in lines[0] and "cpu" in lines[0] and "leaps-engine evaluate X" in lines[0]
    header = next(line for line in lines if line.startswith("| model"))
    assert "top-1 m / v / e" in header and "IS m / v (mean ± std)" in header and "PSNR / SSIM stimulus" in header
    assert lines[-1].startswith("| embedded | leaps | full | jvs | 1.0 | embedded_verifier | 4 |")
    _, text = evaluate([runs], capsys, output_format="csv")
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["n_videos"] == "4" and row["top1_evaluator"] == ""
    assert {"inception_score_model_mean", "inception_score_model_std", "psnr_stimulus"} <= set(row)


def test_manifests_resolve_relative_paths(runs):
    expected = [(runs / name / "result.json").resolve() for name in ("a", "b")]
    manifests = runs / "manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "list.txt").write_text("# two runs\n../a\n\n../b/result.json\n")
    (manifests / "list.json").write_text(json.dumps(["../a", str(runs / "b"), "../a"]))  # a repeated: kept once
    assert find_result_files([manifests / "list.txt"]) == expected
    assert find_result_files([manifests / "list.json"]) == expected
    assert find_result_files([runs / "a", runs]) == expected


def corrupt_result(root: Path, runs: Path) -> Path:
    folder = root / "corrupt"
    shutil.copytree(runs / "a", folder)
    (folder / "result.json").write_text('{"model": ')
    return folder


def corrupt_tensor(root: Path, runs: Path) -> Path:
    folder = root / "bad_tensor"
    shutil.copytree(runs / "a", folder)
    clip = json.loads((folder / "result.json").read_text())["clips"][0]
    (folder / clip["tensor"]).write_bytes(b"not a tensor")
    return folder


def empty_folder(root: Path, runs: Path) -> Path:
    (root / "empty" / "sub").mkdir(parents=True)
    return root / "empty"


BAD_INPUTS = [
    (lambda root, runs: root / "missing", {}, "path not found"),
    (empty_folder, {}, "no result.json found under"),
    (corrupt_result, {}, "corrupt/result.json"),
    (corrupt_tensor, {}, "video.pt"),
    (lambda root, runs: runs / "a", {"evaluator": "x3d_mm"}, "unknown model 'x3d_mm'"),
    (lambda root, runs: runs / "a", {"group_by": "model,metod"}, "unknown --group-by key 'metod'"),
    (lambda root, runs: runs / "a", {"evaluator_weights": "random"}, "--evaluator-weights needs --evaluator"),
    (lambda root, runs: runs / "a" / "clip_00_moving_right" / "video.pt", {}, "not a result folder"),
]


@pytest.mark.parametrize(("make_path", "options", "message"), BAD_INPUTS)
def test_bad_input_raises_one_line_and_writes_nothing(runs, tmp_path, make_path, options, message):
    out = tmp_path / "table.md"
    with pytest.raises(LeapsError, match=message) as caught:
        run_evaluate(paths=[str(make_path(tmp_path, runs))], out=str(out), **options)
    assert "\n" not in str(caught.value)
    assert not out.exists() and not list(tmp_path.glob(".table*"))


def test_unwritable_out_fails_before_any_work(runs, tmp_path):
    with pytest.raises(LeapsError, match="cannot write"):
        run_evaluate(paths=[str(runs / "a")], out=str(tmp_path / "no" / "such" / "table.md"))


def test_command_on_a_click_group_ends_with_one_error_line(runs, tmp_path):
    @click.group()
    def group() -> None:
        pass

    @group.command()
    @click.argument("paths", nargs=-1, required=True)
    @click.option("--evaluator", default=None)
    def evaluate(paths: tuple[str, ...], evaluator: str | None) -> None:
        with _user_errors():
            run_evaluate(paths=paths, evaluator=evaluator, command=" ".join(sys.argv))

    result = CliRunner().invoke(group, ["evaluate", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and result.output.strip() == f"error: path not found: {tmp_path / 'nothing'}"


def test_loaded_tensors_are_videos(runs):
    clip = recorded_clips(runs / "a")[0]
    video = torch.load(runs / "a" / clip["tensor"], weights_only=True)
    assert video.dim() == 4 and video.shape[0] == 3 and 0.0 <= video.min() <= video.max() <= 1.0
