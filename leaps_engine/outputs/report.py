"""``leaps-engine report``: one self-contained HTML page of result folders, sweeps and the tables of
``bench``, ``evaluate`` and ``tune``.

The page needs no network and no file beside it: videos are embedded as ``data:`` URIs (H.264 mp4; the
stimulus is encoded from ``stimulus.pt`` at the clip's display scale and frame rate), plots are inline
SVG (:mod:`leaps_engine.outputs.plots`), styles and the script that keeps each stimulus and its
synthesized video looping in step are inline. Sections, in order: the comparison across runs (a grid
of synthesized videos, class x setting, beside the ``evaluate`` table), each run (loss curves, then per
clip the two videos, the model's and the verifier's top-5 and the clip's seed, class and settings),
latency (``bench --format json``: the paper's Table 4 as a plot), quality tables (``evaluate --format
json``) and tuning grids (``tune.json``).

Reading the inputs: :func:`collect_inputs`; building the page: :func:`render_report`.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from leaps_engine._features import package_versions, require
from leaps_engine._io import read_text
from leaps_engine.errors import LeapsError, one_line
from leaps_engine.outputs import plots, results, tables
from leaps_engine.outputs import video as video_files

TUNE_FILE = "tune.json"
DEFAULT_FPS = 5  # result.json files written before clips recorded their frame rate (synthesize's default)
SKIPPED_SETTINGS = ("seed", "preset_source")  # config fields that do not tell settings apart
BENCH_KEYS = {"model", "resolution", "batch", "backend", "dtype", "device", "forward_ms"}  # of every bench row
TRIAL_KEYS = {"lambda_first", "lambda_last", "r", "verifier_top1", "verifier_target_prob", "model_top1", "seconds"}


@dataclass
class ReportInputs:
    """What a report shows, each item with the file it came from."""

    runs: list[results.Run] = field(default_factory=list)
    benches: list[tuple[Path, list[dict]]] = field(default_factory=list)  # bench --format json rows
    evaluations: list[tuple[Path, list[dict]]] = field(default_factory=list)  # evaluate --format json rows
    tunes: list[tuple[Path, dict]] = field(default_factory=list)  # tune.json


def collect_inputs(paths: Sequence[str | os.PathLike]) -> ReportInputs:
    """Read every report input named by ``paths``: result folders and folders of them (searched
    recursively for result.json and tune.json, hidden folders skipped), result.json files, manifests
    (.txt, or .json lists of paths), and ``bench`` / ``evaluate`` JSON tables and ``tune.json`` files.

    Raises:
        LeapsError: no paths; a path that does not exist, holds nothing a report shows, or is an
            unreadable or unrecognised file.
    """
    if not paths:
        raise LeapsError("give at least one result folder, sweep output, or bench / evaluate / tune JSON")
    inputs = ReportInputs()
    for path in map(Path, paths):
        if not path.exists():
            raise LeapsError(f"path not found: {path}")
        if path.is_dir():
            _add_folder(inputs, path)
        elif path.suffix.lower() == ".json":
            _add_json(inputs, path)
        elif path.suffix.lower() == ".txt":
            inputs.runs += [results.load_run(found) for found in results.find_result_files([path])]
        else:
            raise LeapsError(f"{path} is not a result folder, a JSON file or a manifest (.txt)")
    inputs.runs = list({run.path.resolve(): run for run in inputs.runs}.values())
    for kind in ("benches", "evaluations", "tunes"):  # one section per file, however often it was named
        unique = {path.resolve(): (path, content) for path, content in getattr(inputs, kind)}
        setattr(inputs, kind, list(unique.values()))
    return inputs


def _add_folder(inputs: ReportInputs, folder: Path) -> None:
    found = results.files_under(folder, results.RESULT_FILE)
    tunes = results.files_under(folder, TUNE_FILE)
    if not found and not tunes:
        raise LeapsError(f"no {results.RESULT_FILE} or {TUNE_FILE} found under {folder}")
    inputs.runs += [results.load_run(path) for path in found]
    inputs.tunes += [(path, _tune_report(path, _read_json(path))) for path in tunes]


def _add_json(inputs: ReportInputs, path: Path) -> None:
    content = _read_json(path)
    if isinstance(content, dict) and "clips" in content:
        if path.name != results.RESULT_FILE:
            raise LeapsError(f"{path} looks like a result file; give it by its folder or as {results.RESULT_FILE}")
        inputs.runs.append(results.load_run(path))
    elif isinstance(content, dict) and {"trials", "best"} <= set(content):
        inputs.tunes.append((path, _tune_report(path, content)))
    elif isinstance(content, list) and content and all(isinstance(entry, str) for entry in content):
        inputs.runs += [results.load_run(found) for found in results.find_result_files([path])]
    elif _rows_with(content, BENCH_KEYS):
        inputs.benches.append((path, content))
    elif _rows_with(content, {"n_videos", "top1_model"}):
        inputs.evaluations.append((path, content))
    else:
        raise LeapsError(f"{path} is neither a result.json, a manifest, a tune.json nor a bench or evaluate "
                         "table written with --format json")


def _tune_report(path: Path, content: object) -> dict:
    """``content`` of a tune.json, checked: a best trial and at least one trial, each with every field."""
    trials = content.get("trials") if isinstance(content, dict) else None
    if not trials or not all(isinstance(t, dict) and set(t) >= TRIAL_KEYS for t in [*trials, content.get("best")]):
        raise LeapsError(f"{path} is not a tune.json of leaps-engine tune: it needs 'best' and 'trials' with "
                         f"{', '.join(sorted(TRIAL_KEYS))}")
    return content


def _read_json(path: Path) -> object:
    try:
        return json.loads(read_text(path, "JSON file"))
    except json.JSONDecodeError as error:
        raise LeapsError(f"cannot read {path}: {one_line(error)}") from None


def _rows_with(content: object, keys: set[str]) -> bool:
    return isinstance(content, list) and bool(content) and all(
        isinstance(row, dict) and keys <= set(row) for row in content)


def setting_keys(runs: Sequence[results.Run]) -> tuple[str, ...]:
    """The keys (``model``, ``verifier``, config fields but the seed) whose values differ between
    ``runs``: what tells their settings apart; ``("model",)`` if nothing does."""
    candidates = sorted(set().union(*(results.config_keys(run.summary) for run in runs)) - set(SKIPPED_SETTINGS))
    candidates = ["model", "verifier", *(key for key in candidates if key not in ("model", "verifier"))]
    differing = [key for key in candidates
                 if len({json.dumps(results.config_value(run.summary, key)) for run in runs}) > 1]
    return tuple(differing) or ("model",)


# ---- the page ---------------------------------------------------------------------------------------------

def render_report(inputs: ReportInputs, *, comparison: list[dict] | None = None, comparison_note: str = "",
                  title: str = "leaps-engine report", progress: Callable[[int], None] = lambda n: None) -> str:
    """The whole HTML page of ``inputs``.

    Args:
        comparison: the ``evaluate`` rows of the runs grouped by :func:`setting_keys` (shown beside the
            grid of runs when there are several); ``None`` leaves the table out, with ``comparison_note``.
        progress: called with 1 after each clip is placed (its stimulus encoded).
    """
    body = [f"<header><h1>{_text(title)}</h1><p>{_text(_made_line(inputs))}</p></header>"]
    if len(inputs.runs) > 1:
        body.append(_comparison_section(inputs.runs, comparison, comparison_note))
    body += [_run_section(run, number, progress) for number, run in enumerate(inputs.runs, 1)]
    body += [_latency_section(path, rows) for path, rows in inputs.benches]
    body += [_evaluation_section(path, rows) for path, rows in inputs.evaluations]
    body += [_tune_section(path, report) for path, report in inputs.tunes]
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_text(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}<script>{SCRIPT}</script></body></html>\n")


def _made_line(inputs: ReportInputs) -> str:
    version = package_versions(("leaps-engine",)).get("leaps-engine") or "unknown"
    videos = sum(len(run.summary["clips"]) for run in inputs.runs)
    counts = [f"{_count(len(inputs.runs), 'run')} ({_count(videos, 'video')})",
              _count(len(inputs.benches), "latency table"), _count(len(inputs.evaluations), "quality table"),
              _count(len(inputs.tunes), "tuning grid")]
    made = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"Made {made} by leaps-engine {version} from " + ", ".join(counts) + "."


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _run_section(run: results.Run, number: int, progress: Callable[[int], None]) -> str:
    summary = run.summary
    clips = summary["clips"]
    config = summary.get("config", {})
    verifier = summary.get("verifier")
    facts = [f"model {summary['model']['name']} ({summary['model'].get('weights')} weights)",
             "no verifier" if verifier is None else f"verifier {verifier['name']} ({verifier.get('weights')})",
             f"method {results.config_value(summary, 'method')}", f"{config.get('steps', '?')} steps",
             f"x* {results.config_value(summary, 'size')}", f"device {summary.get('device', '?')}",
             f"{summary.get('synthesis_seconds', '?')} s"]
    labels = [f"{clip['target_class']} (seed {clip.get('seed')})" for clip in clips]
    curves = plots.history_svg([clip.get("history", {}) for clip in clips], labels)
    settings = "".join(f"<tr><th>{_text(key)}</th><td>{_text(value)}</td></tr>" for key, value in config.items())
    cards = []
    for clip in clips:
        cards.append(_clip_card(run, clip))
        progress(1)
    return (f"<section class=\"run\" id=\"run-{number}\"><h2>Run {number}: {_text(run.path.resolve().parent.name)}</h2>"
            f"<p class=\"facts\">{_text(' · '.join(facts))}<br><code>{_text(run.path)}</code></p>"
            f"<details><summary>settings (result.json config)</summary><table class=\"settings\">{settings}"
            f"</table></details>"
            f"<figure class=\"plot history\">{curves}<figcaption>Loss terms and target probability at every "
            f"step, one line per video (result.json history). total = CE + L_prim + r (R_coh + R_feat) for "
            f"LEAPS (Eq. 4), CE + pixel prior for the baselines; CE in nats; p(target) is the model's softmax "
            f"probability of the target class. Log scale where the values span over a decade."
            f"</figcaption></figure><div class=\"clips\">{''.join(cards)}</div></section>")


def _clip_card(run: results.Run, clip: dict) -> str:
    stimulus = _stimulus_video(run, clip)
    synthesized = _video(_clip_file(run, clip.get("mp4")), "synthesized", loop=not stimulus.startswith("<video"))
    bars = _top5(f"model: {run.summary['model']['name']}", clip.get("model_top5"), clip["target_class"])
    if run.summary.get("verifier") is not None:
        bars += _top5(f"verifier: {run.summary['verifier']['name']}", clip.get("verifier_top5"),
                      clip["target_class"])
    about = (f"<b>{_text(clip['target_class'])}</b> · seed {_text(clip.get('seed'))} · stimulus "
             f"{_text(clip.get('stimulus') or 'none')} · bars: top-5 softmax probabilities, the target in bold")
    return (f"<figure class=\"clip\"><div class=\"pair\"><div><span>stimulus</span>{stimulus}</div>"
            f"<div><span>synthesized</span>{synthesized}</div></div><figcaption>{about}</figcaption>"
            f"<div class=\"bars\">{bars}</div></figure>")


def _stimulus_video(run: results.Run, clip: dict) -> str:
    """The stimulus as a ``<video>`` (encoded from stimulus.pt at the clip's scale and frame rate); a
    neutral note for a run without one (the baselines), the gap marked where its file is gone or unreadable."""
    if not clip.get("stimulus_tensor"):
        return f"<div class=\"none\">no stimulus (method {_text(results.config_value(run.summary, 'method'))})</div>"
    if _clip_file(run, clip["stimulus_tensor"]) is None:
        return _missing("stimulus", clip["stimulus_tensor"])
    try:
        pixels = results.load_video(run.path, clip["stimulus_tensor"])
    except LeapsError as error:
        return _missing("stimulus", str(error))
    with tempfile.TemporaryDirectory() as folder:
        encoded = Path(folder) / "stimulus.mp4"
        scale = clip.get("display_scale") or results.display_scale(pixels)
        video_files.write_mp4(encoded, pixels, fps=_frame_rate(run, clip), scale=scale)
        return _video(encoded, "stimulus", loop=False)


def _frame_rate(run: results.Run, clip: dict) -> float:
    """The clip's frame rate: recorded in result.json, else read from its mp4, else :data:`DEFAULT_FPS`."""
    if "fps" in clip:
        return clip["fps"]
    mp4 = _clip_file(run, clip.get("mp4"))
    if mp4 is not None:
        with require("av", "reading video files").open(str(mp4)) as container:
            rate = container.streams.video[0].average_rate
            if rate:
                return float(rate)
    return DEFAULT_FPS


def _comparison_section(runs: list[results.Run], rows: list[dict] | None, note: str) -> str:
    keys = setting_keys(runs)
    settings: dict[tuple, list[results.Run]] = {}
    for run in runs:
        settings.setdefault(tuple(results.config_value(run.summary, key) for key in keys), []).append(run)
    classes = list(dict.fromkeys(clip["target_class"] for run in runs for clip in run.summary["clips"]))
    head = "".join(f"<th>{'<br>'.join(_text(f'{k}={v}') for k, v in zip(keys, values, strict=True))}</th>"
                   for values in settings)
    lines = []
    for name in classes:
        cells = []
        for group in settings.values():
            found = next(((run, clip) for run in group for clip in run.summary["clips"]
                          if clip["target_class"] == name), None)
            cells.append("<td>-</td>" if found is None else
                         f"<td>{_video(_clip_file(found[0], found[1].get('mp4')), 'synthesized', loop=True)}</td>")
        lines.append(f"<tr><th>{_text(name)}</th>{''.join(cells)}</tr>")
    grid = f"<table class=\"grid\"><tr><th>class</th>{head}</tr>{''.join(lines)}</table>"
    table = (_html_table(tables.quality_grid(rows, keys)) if rows is not None
             else f"<p class=\"missing\">{_text(note or 'not scored')}</p>")
    return (f"<section id=\"comparison\"><h2>Across runs</h2><div class=\"side\"><figure>{grid}<figcaption>"
            f"Synthesized videos, one row per class and one column per setting (the keys that differ "
            f"between runs); the first video of each.</figcaption></figure><figure>{table}<figcaption>"
            f"leaps-engine evaluate, grouped by {', '.join(keys)}: top-1 / top-5 in percent under the "
            f"model / verifier / evaluator, Inception Score, consecutive-frame PSNR (dB) / SSIM, and the "
            f"high-frequency ratio (synthesized over stimulus; real clips 1.0).</figcaption>"
            f"</figure></div></section>")


def _clip_file(run: results.Run, relative: str | None) -> Path | None:
    """The clip file ``relative`` to ``run``'s folder, or ``None`` if it is not named or not there."""
    if not relative:
        return None
    path = run.path.parent / relative
    return path if path.is_file() else None


def _video(path: Path | None, kind: str, loop: bool) -> str:
    """A muted, autoplaying ``<video>`` of the mp4 at ``path`` (embedded), or the gap marked."""
    if path is None:
        return _missing(kind, "file missing")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<video class=\"{kind}\" muted autoplay playsinline preload=\"auto\"{' loop' if loop else ''} "
            f"src=\"data:video/mp4;base64,{data}\"></video>")


def _missing(kind: str, why: str) -> str:
    return f"<div class=\"missing {kind}\">{_text(kind)} video missing: {_text(why)}</div>"


def _top5(title: str, entries: list[dict] | None, target: str) -> str:
    if not entries:
        return ""
    rows = "".join(
        f"<tr class=\"{'target' if entry['class'] == target else 'other'}\"><th>{_text(entry['class'])}</th>"
        f"<td><div class=\"bar\" style=\"width:{100 * entry['prob']:.1f}%\"></div></td>"
        f"<td>{entry['prob']:.3f}</td></tr>" for entry in entries)
    return f"<table class=\"top5\"><caption>{_text(title)}</caption>{rows}</table>"


def _latency_section(path: Path, rows: list[dict]) -> str:
    models = list(dict.fromkeys(row["model"] for row in rows))  # a plot per model of the step backends
    figures = []
    for model in models:
        steps = [row for row in rows if row["model"] == model and not row.get("forward_only")]
        if not steps:
            continue  # forward-only rows: the table below has them
        measured = [row for row in steps if not row.get("skipped")] or steps
        caption = (f"Latency of {_text(model)} per x* size and backend, milliseconds per iteration (medians), "
                   f"in the layout of the paper's Table 4. Device {_values(measured, 'device')}, dtype "
                   f"{_values(measured, 'dtype')}, batch {_values(measured, 'batch')}; leaps-engine bench, "
                   f"{_text(path.name)}.")
        figures.append(f"<figure class=\"plot latency\">{plots.latency_svg(steps, model)}<figcaption>{caption}"
                       f"</figcaption></figure>")
    lines = [tables.BenchLine.from_dict(row) for row in rows]
    grids = "".join(_html_table(grid) for grid in tables.latency_grids(lines))
    return (f"<section class=\"latency\"><h2>Latency: {_text(path.name)}</h2><p><code>{_text(path)}</code></p>"
            f"{''.join(figures)}{grids}</section>")


def _values(rows: list[dict], key: str) -> str:
    return ", ".join(_text(value) for value in dict.fromkeys(row.get(key) for row in rows))


def _evaluation_section(path: Path, rows: list[dict]) -> str:
    keys = list(rows[0])[:list(rows[0]).index("n_runs")] if "n_runs" in rows[0] else []
    return (f"<section class=\"quality\"><h2>Quality: {_text(path.name)}</h2><p><code>{_text(path)}</code></p>"
            f"{_html_table(tables.quality_grid(rows, keys))}<p class=\"note\">leaps-engine evaluate: top-1 / top-5 "
            f"in percent under the model / verifier / evaluator, Inception Score, consecutive-frame PSNR (dB) / "
            f"SSIM, high-frequency ratio.</p></section>")


def _tune_section(path: Path, report: dict) -> str:
    grid = tables.tune_grid(report)
    best = ", ".join(f"{column} {cell}" for column, cell in zip(grid.columns, grid.rows[0], strict=True))
    verifier = (report.get("verifier") or {}).get("name")
    about = (f"{report.get('model')}, verifier {verifier}, {report.get('steps')} steps, "
             f"seed {report.get('seed')}, {report.get('restarts', 1)} restart(s) per video, motion sparsity "
             f"{report.get('motion_sparsity', 0.0)}; "
             f"command: {report.get('command')}")
    return (f"<section class=\"tune\"><h2>Tuning: {_text(path.parent.name)}</h2><p>{_text(about)}<br>"
            f"<code>{_text(path)}</code></p><p>Best: {_text(best)}.</p><details><summary>all "
            f"{len(grid.rows)} trials, best first (ranked by verifier top-1, then its target probability, then "
            f"model top-1)</summary>{_html_table(grid)}</details></section>")


def _html_table(grid: tables.Grid) -> str:
    head = "".join(f"<th>{_text(column)}</th>" for column in grid.columns)
    body = "".join(
        "<tr>" + "".join(f"<td class=\"{'number' if i >= grid.left else 'text'}\">{_text(cell)}</td>"
                         for i, cell in enumerate(row)) + "</tr>" for row in grid.rows)
    note = f"<p class=\"note\">{_text(grid.note)}</p>" if grid.note else ""
    return f"<table class=\"data\"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _text(value: object) -> str:
    return html.escape(str(value))


STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1360px;padding:0 16px 48px;color:#1b1b1b}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 6px;border-top:1px solid #ddd;padding-top:14px}
code{font-size:12px;color:#555}.facts{margin:4px 0}figure{margin:10px 0}figcaption,.note{font-size:12px;color:#555}
.plot svg{max-width:100%;height:auto}.clips{display:flex;flex-wrap:wrap;gap:14px}
.clip{border:1px solid #ddd;border-radius:6px;padding:8px;width:440px;margin:0}
.pair{display:flex;gap:8px}.pair>div{flex:1;text-align:center;font-size:12px;color:#555}
video{width:100%;image-rendering:pixelated;background:#000;display:block}
.none{background:#f2f2f2;color:#555;padding:24px 6px;font-size:12px;text-align:center}
.missing{background:#fbeaea;color:#8a1c1c;border:1px dashed #c66;padding:24px 6px;font-size:12px;text-align:center}
.bars{display:flex;gap:10px}.top5{flex:1;font-size:11px;border-collapse:collapse}
.top5 caption{text-align:left;color:#555}
.top5 th{text-align:left;font-weight:normal;white-space:nowrap;padding-right:4px}
.top5 td:nth-child(2){width:45%}.bar{height:9px;background:#7aa6d6;min-width:1px}
.top5 tr.target th{font-weight:bold}.top5 tr.target .bar{background:#2f6db5}
.side{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.grid video{width:96px}
.grid th{font-size:11px;font-weight:normal;text-align:left;padding:2px 6px}
table.data{border-collapse:collapse;font-size:12px;margin:8px 0}
table.data th,table.data td{border-bottom:1px solid #e3e3e3;padding:3px 8px;text-align:left}
table.data td.number{text-align:right;font-variant-numeric:tabular-nums}
.settings{font-size:12px}.settings th{text-align:left;font-weight:normal;color:#555;padding-right:12px}
"""

# Each stimulus and its synthesized video restart together when the stimulus ends, so they loop in step.
SCRIPT = """
for (const pair of document.querySelectorAll('.pair')) {
  const videos = [...pair.querySelectorAll('video')];
  if (videos.length < 2) { videos.forEach(v => { v.loop = true; }); continue; }
  videos[0].addEventListener('ended', () => {
    for (const v of videos) { v.currentTime = 0; v.play().catch(() => {}); }
  });
}
"""
