"""Files as people's tools leave them: text saved with a UTF-8 byte-order mark (spreadsheets' "CSV UTF-8",
some editors' JSON), and folders holding what operating systems add (macOS's ``._*`` AppleDouble
companions and ``.DS_Store``, Windows' ``Thumbs.db`` and ``desktop.ini``, ``__MACOSX`` from archives)."""

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from leaps_engine.cli import main
from leaps_engine.engine.adapters.base import InputSpec
from leaps_engine.engine.stimulus import expand_stimulus, load_stimulus
from leaps_engine.errors import LeapsError
from leaps_engine.sweep.manifest import plan_jobs, read_manifest

BOM = "\ufeff"
APPLEDOUBLE = b"\x00\x05\x16\x07" + bytes(4092)  # a 4 KB AppleDouble header, not a video


def _spec():
    return InputSpec(frames=2, sampling_rate=1, crop_size=8, fixed_size=False, mean=(0.5,) * 3, std=(0.5,) * 3,
                     class_names=("a",))


def _junk(folder, *names):
    for name in names:
        if name == "__MACOSX":
            (folder / name).mkdir()
            (folder / name / "._clip.mp4").write_bytes(APPLEDOUBLE)
        else:
            (folder / name).write_bytes(APPLEDOUBLE)


# ---- byte-order marks -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_manifest_with_a_byte_order_mark_reads_like_one_without(tmp_path, suffix):
    rows = {".csv": "class,seed,steps\nmoving right,3,5\n",
            ".jsonl": json.dumps({"class": "moving right", "seed": 3, "steps": 5}) + "\n"}[suffix]
    plain, marked = tmp_path / f"plain{suffix}", tmp_path / f"marked{suffix}"
    plain.write_text(rows, encoding="utf-8")
    marked.write_text(BOM + rows, encoding="utf-8")
    assert read_manifest(marked) == read_manifest(plain)
    assert read_manifest(marked)[0].label == "moving right"


def test_a_labels_file_with_a_byte_order_mark_plans_like_one_without(tmp_path):
    torch.save(torch.rand(3, 8, 32, 32), tmp_path / "a.pt")
    (tmp_path / "labels.csv").write_text(BOM + "path,class\na.pt,orbiting\n", encoding="utf-8")
    (job,) = plan_jobs(tmp_path, ["embedded"], [0], labels_csv=tmp_path / "labels.csv")
    assert job.label == "orbiting"


def test_an_evaluate_manifest_with_a_byte_order_mark_is_read(tmp_path):
    (tmp_path / "paths.json").write_text(BOM + json.dumps(["nowhere"]), encoding="utf-8")
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path / "paths.json")])
    assert result.exit_code == 2 and result.output.strip().endswith(f"path not found: {tmp_path / 'nowhere'}")


# ---- operating-system junk ------------------------------------------------------------------------


def test_a_stimulus_folder_skips_appledouble_and_system_files(tmp_path):
    for seed in range(2):
        torch.save(torch.rand(3, 4, 16, 16), tmp_path / f"clip{seed}.pt")
    _junk(tmp_path, "._clip0.pt", "._clip1.mp4", ".DS_Store", "Thumbs.db", "desktop.ini", "__MACOSX")
    assert expand_stimulus(tmp_path) == [tmp_path / "clip0.pt", tmp_path / "clip1.pt"]


def test_a_frame_folder_skips_them_too(tmp_path):
    for index in range(3):
        Image.new("RGB", (16, 16), (40 * index,) * 3).save(tmp_path / f"frame{index}.png")
    _junk(tmp_path, "._frame0.png", ".DS_Store", "Thumbs.db")
    assert expand_stimulus(tmp_path) == [tmp_path]
    assert load_stimulus(tmp_path, _spec()).shape == (3, 2, 8, 8)


def test_a_folder_of_nothing_but_junk_is_one_error_line(tmp_path):
    _junk(tmp_path, "._clip.mp4", ".DS_Store", "Thumbs.db")
    with pytest.raises(LeapsError, match="holds no video, tensor or frame image"):
        expand_stimulus(tmp_path)
    result = CliRunner().invoke(main, ["synthesize", "--stimulus", str(tmp_path), "--steps", "1",
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: folder")
    assert not (tmp_path / "out").exists()


def test_sweep_plan_writes_no_job_for_junk(tmp_path):
    folder = tmp_path / "stimuli" / "growing"
    folder.mkdir(parents=True)
    torch.save(torch.rand(3, 8, 32, 32), folder / "clip.pt")
    _junk(folder, "._clip.pt", "._clip.mp4", ".DS_Store", "Thumbs.db", "__MACOSX")
    _junk(tmp_path / "stimuli", "._growing", ".DS_Store")
    (tmp_path / "stimuli" / ".Trashes").mkdir()
    (tmp_path / "stimuli" / ".Trashes" / "old.pt").write_bytes(APPLEDOUBLE)
    jobs = plan_jobs(tmp_path / "stimuli", ["embedded"], [0])
    assert [(job.label, job.stimulus) for job in jobs] == [("growing", (str(folder / "clip.pt"),))]
