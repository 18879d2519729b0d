"""``leaps-engine report``: the page's content from runs, sweeps and tables, bad input, and the page in a
real browser (Debian's Chromium driven by Playwright)."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from leaps_engine.cli import main
from leaps_engine.outputs.plots import HISTORY_PANELS

BROWSER = Path("/usr/bin/chromium")
# .ci/run sets this: there, a browser test that cannot run fails instead of skipping.
BROWSER_REQUIRED = os.environ.get("LEAPS_ENGINE_BROWSER_TESTS") == "required"


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """One result folder of two clips (3 steps on the embedded model), written with --report."""
    out = tmp_path_factory.mktemp("runs") / "default"
    result = run_cli("synthesize", "--class", "moving right", "--class", "growing", "--steps", 3, "--report",
                     "--out", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.html'}" in result.output
    assert "<h2>Run 1: default</h2>" in (out / "report.html").read_text()  # named after the published folder
    return out


def videos(page: str, kind: str) -> list[str]:
    return re.findall(rf'<video class="{kind}"[^>]*>', page)


def test_synthesize_report_embeds_both_videos_of_every_clip_and_the_loss_curves(run_folder):
    page = (run_folder / "report.html").read_text()
    assert len(videos(page, "stimulus")) == len(videos(page, "synthesized")) == 2
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert sources and all(source.startswith("data:video/mp4;base64,") for source in sources)
    links = re.findall(r'\s(?:href|xlink:href)="([^"]*)"', page)
    assert all(link.startswith("#") for link in links)  # nothing the page would fetch
    assert page.count('<figure class="plot history">') == 1
    assert "mathdefault" not in re.sub(r"<!--.*?-->", "", page, flags=re.S)  # tick labels rendered, not raw TeX
    for _, title in HISTORY_PANELS:
        assert title in page
    assert "moving right" in page and "growing" in page and "seed 1" in page
    assert page.count('<table class="top5">') == 4  # model and verifier, per clip
    assert 'id="comparison"' not in page  # one run: nothing to compare


def test_runs_with_other_settings_are_compared_in_a_grid_beside_the_evaluate_table(run_folder, tmp_path):
    other = tmp_path / "pixel"
    shutil.copytree(run_folder, other)
    summary = json.loads((other / "result.json").read_text())
    assert summary["config"]["parameterization"] == "layers"  # the embedded default
    summary["config"]["parameterization"] = "pixel"
    (other / "result.json").write_text(json.dumps(summary))
    out = tmp_path / "page.html"
    result = run_cli("report", run_folder, other, "--out", out, "--evaluator", "embedded_evaluator")
    assert result.exit_code == 0, result.output
    page = out.read_text()
    comparison = page[page.index('id="comparison"'):page.index('id="run-1"')]
    assert "parameterization=pixel" in comparison and "parameterization=layers" in comparison
    assert len(videos(comparison, "synthesized")) == 4  # 2 classes x 2 settings
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", comparison).group(1)
    assert "parameterization" in header and "top-1 m / v / e" in header
    rows = re.findall(r"<tbody>(.*?)</tbody>", comparison)[0].count("<tr>")
    assert rows == 2
    assert page.count('<section class="run"') == 2


def bench_rows() -> list[dict]:
    common = {"model": "embedded", "batch": 1, "dtype": "float32", "device": "cpu", "iters": 3,
              "model_input": "8x32x32", "verifier": "embedded_verifier"}
    rows = []
    for resolution, scale in (("8x32x32", 1.0), ("8x64x64", 3.0)):
        for backend, speed in (("reference", 2.0), ("eager", 1.0)):
            ms = scale * speed
            rows.append({**common, "resolution": resolution, "backend": backend, "forward_ms": ms,
                         "backward_ms": 2 * ms, "step_ms": 3 * ms, "step_p10_ms": 3 * ms, "step_p90_ms": 3 * ms,
                         "iters_per_s": 1000 / (3 * ms), "warmup_s": 0.1})
    return rows


def test_bench_evaluate_and_tune_tables_each_get_their_section(run_folder, tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(bench_rows()))
    evaluation = tmp_path / "quality.json"
    assert run_cli("evaluate", run_folder, "--format", "json", "--out", evaluation).exit_code == 0
    tune = tmp_path / "tune" / "tune.json"
    tune.parent.mkdir()
    trial = {"lambda_first": 0.5, "lambda_last": 0.1, "r": 1e-6, "verifier_top1": 50.0, "verifier_target_prob": 0.4,
             "model_top1": 100.0, "seconds": 1.0}
    worse = {**trial, "r": 1e-3, "verifier_top1": 25.0}
    tune.write_text(json.dumps({"model": "embedded", "verifier": {"name": "embedded_verifier"}, "steps": 3, "seed": 0,
                                "command": "leaps-engine tune", "best": trial, "trials": [worse, trial]}))
    out = tmp_path / "tables.html"
    result = run_cli("report", bench, evaluation, tune.parent, "--out", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    latency = page[page.index('<section class="latency">'):page.index('<section class="quality">')]
    assert latency.count("<svg") == 1 and "Device cpu, dtype float32, batch 1" in latency
    for panel in ("embedded: forward", "embedded: backprop", "embedded: step"):
        assert panel in latency
    assert "8x64x64" in latency and "2.00x" in latency  # the table's speed-up: reference / eager
    quality = page[page.index('<section class="quality">'):page.index('<section class="tune">')]
    assert "model" in quality and "HF ratio" in quality
    assert "verifier top-1 % 50.0 (best)" in page


def test_a_missing_video_is_marked_and_the_rest_still_renders(run_folder, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run_folder, broken)
    (broken / "clip_00_moving_right" / "video.mp4").unlink()
    (broken / "clip_01_growing" / "stimulus.pt").unlink()
    out = tmp_path / "broken.html"
    result = run_cli("report", broken, "--out", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "synthesized video missing: file missing" in page
    assert "stimulus video missing: clip_01_growing/stimulus.pt" in page
    assert len(videos(page, "stimulus")) == len(videos(page, "synthesized")) == 1


def test_a_baseline_run_shows_that_it_has_no_stimulus(run_folder, tmp_path):
    baseline = tmp_path / "deepdream"
    shutil.copytree(run_folder, baseline)
    summary = json.loads((baseline / "result.json").read_text())
    summary["config"]["method"] = "deepdream"
    for clip in summary["clips"]:
        clip.pop("stimulus_tensor")
    (baseline / "result.json").write_text(json.dumps(summary))
    out = tmp_path / "baseline.html"
    assert run_cli("report", baseline, "--out", out).exit_code == 0
    page = out.read_text()
    assert page.count("no stimulus (method deepdream)") == 2 and "video missing" not in page


def test_runs_that_cannot_be_scored_still_get_their_page_with_the_reason(run_folder, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run_folder, elsewhere)
    summary = json.loads((elsewhere / "result.json").read_text())
    summary["model"]["weights"] = str(tmp_path / "gone.pt")
    (elsewhere / "result.json").write_text(json.dumps(summary))
    manifest = tmp_path / "runs.txt"
    manifest.write_text(f"{run_folder}\n{elsewhere}\n")
    out = tmp_path / "unscored.html"
    result = CliRunner().invoke(main, ["report", str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: the comparison has no evaluate table" in result.stderr
    page = out.read_text()
    assert "Not scored:" in page and "gone.pt" in page and page.count('<section class="run"') == 2


@pytest.mark.parametrize("make_input, message", [
    (lambda tmp: tmp / "absent", "path not found"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no result.json or tune.json found under"),
    (lambda tmp: (tmp / "other.json").write_text('{"a": 1}') and tmp / "other.json", "is neither a result.json"),
    (lambda tmp: (tmp / "bad.json").write_text("{") and tmp / "bad.json", "cannot read"),
])
def test_bad_input_gets_one_error_line_and_no_page(tmp_path, make_input, message):
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["report", str(make_input(tmp_path)), "--out", str(out)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_an_unknown_evaluator_is_refused_before_anything_is_read(run_folder, tmp_path):
    result = CliRunner().invoke(main, ["report", str(run_folder), "--evaluator", "nope", "--out", str(tmp_path / "x.html")])
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and "nope" in result.stderr
    assert not (tmp_path / "x.html").exists()


def test_out_must_be_a_file_in_an_existing_folder(run_folder, tmp_path):
    result = CliRunner().invoke(main, ["report", str(run_folder), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.stderr
    result = CliRunner().invoke(main, ["report", str(run_folder), "--out", str(tmp_path / "no" / "page.html")])
    assert result.exit_code == 2 and "does not exist" in result.stderr


# ---- in a real browser ------------------------------------------------------------------------------------

def browser_problem() -> str | None:
    """Why the browser test cannot run here, or ``None``."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not BROWSER.is_file():
        return f"no Chromium at {BROWSER} (Debian: apt-get install chromium)"
    return None


@pytest.fixture
def chromium():
    problem = browser_problem()
    if problem:
        if BROWSER_REQUIRED:
            pytest.fail(f"the browser test must run here: {problem}")
        pytest.skip(problem)
    from playwright.sync_api import sync_playwright

    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
             "--disable-background-networking", "--disable-component-update"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(BROWSER), args=flags)
        yield browser
        browser.close()


@pytest.mark.browser
def test_the_page_plays_every_video_and_shows_every_plot_in_chromium(run_folder, chromium, tmp_path):
    page = chromium.new_page(viewport={"width": 1366, "height": 900})
    problems = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto((run_folder / "report.html").resolve().as_uri())
    page.wait_for_load_state("load")

    assert page.locator("video.stimulus").count() == page.locator("video.synthesized").count() == 2
    states = page.evaluate("""async () => Promise.all([...document.querySelectorAll('video')].map(async video => {
        if (video.readyState < 1) await new Promise(done => video.addEventListener('loadedmetadata', done));
        video.pause();
        const start = video.currentTime;
        await video.play();
        await new Promise(done => setTimeout(done, 400));
        return {duration: video.duration, start, now: video.currentTime, error: video.error && video.error.code};
    }))""")
    for state in states:
        assert state["error"] is None and state["duration"] > 0, state
        assert state["now"] != state["start"], state  # time moves (it may have looped past the start)
    assert page.locator("figure.plot.history svg").count() == 1
    assert page.locator("figure.plot.history svg path").count() > len(HISTORY_PANELS)  # lines were drawn
    assert page.locator("table.top5").count() == 4
    assert problems == []

    from PIL import Image, ImageStat

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    spread = ImageStat.Stat(Image.open(shot).convert("L")).stddev[0]
    assert spread > 10, f"the screenshot looks blank (grey-level std {spread:.1f})"
