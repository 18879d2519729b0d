"""Synthesis quality on the embedded domain, in the shape of the paper's Tables 1, 2, 3 and S2.

For every setting (the three methods; LEAPS with each priming distance, each objective ablation and
each share of priming layers) it synthesizes every class with several generated stimuli, scores all
videos with ``leaps-engine evaluate`` (inverted model, verifier, and an independent evaluator that never
took part in synthesis), and writes a Markdown report with the tables, a figure (one clip per class
beside its stimulus) and the exact command.

    python benchmarks/quality.py                      # the full setting (committed results)
    python benchmarks/quality.py --classes 2 --stimuli 1 --steps 5 --runs /tmp/q --report /tmp/q.md

Finished runs are kept under ``--runs`` and skipped when the command is repeated, so an interrupted
run resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from leaps_engine._io import atomic_path
from leaps_engine.cli import main as leaps_engine_cli
from leaps_engine.engine.embedded.generator import CLASS_NAMES
from leaps_engine.evaluation import evaluate_results
from leaps_engine.outputs import video as video_files

BASE = {"method": "leaps", "objective": "full", "distance": "jvs", "priming_layers": 1.0}
# (table, row label, overrides of BASE); the BASE setting is shared by every table.
SETTINGS = [
    ("Table 1: methods", "3D DeepDream", {"method": "deepdream"}),
    ("Table 1: methods", "3D AM", {"method": "am"}),
    ("Table 1: methods", "LEAPS", {}),
    ("Table 2: priming distance", "L1", {"distance": "l1"}),
    ("Table 2: priming distance", "L2", {"distance": "l2"}),
    ("Table 2: priming distance", "cosine", {"distance": "cos"}),
    ("Table 2: priming distance", "JVS", {}),
    ("Table 3: objective", "L_prim", {"objective": "prim"}),
    ("Table 3: objective", "L_prim + R_coh", {"objective": "prim+coh"}),
    ("Table 3: objective", "L_prim + R_feat", {"objective": "prim+feat"}),
    ("Table 3: objective", "LEAPS (full)", {}),
    *[("Table S2: priming layers", f"{share}%", {"priming_layers": share / 100}) for share in (20, 40, 60, 80)],
    ("Table S2: priming layers", "100%", {}),
]
GROUP_KEYS = ("method", "objective", "distance", "priming_layers")


def main() -> None:
    args = _parse_args()
    started = time.perf_counter()
    settings = {_slug(overrides): {**BASE, **overrides} for _, _, overrides in SETTINGS}
    runs = Path(args.runs)
    jobs = [(slug, setting, s) for slug, setting in settings.items() for s in range(args.stimuli)]
    for slug, setting, stimulus_set in tqdm(jobs, desc="settings x stimulus sets", unit="run"):
        _synthesize(runs / slug / f"stimuli_{stimulus_set}", setting, stimulus_set, args)
    rows = _evaluate(runs, args)
    figure = Path(args.report).with_suffix(".png")
    _write_figure(figure, runs / _slug({}), args)
    report = _report(rows, figure, args, time.perf_counter() - started)
    with atomic_path(args.report) as temporary:
        Path(temporary).write_text(report)
    print(report)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=len(CLASS_NAMES), help="the first N classes (default: all)")
    parser.add_argument("--stimuli", type=int, default=3, help="generated stimuli per class (default 3)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default: the preset's)")
    parser.add_argument("--evaluator", default="embedded_evaluator", help="the independent evaluator network")
    parser.add_argument("--weights", default=None, help="the embedded classifier's weights (default: shipped)")
    parser.add_argument("--verifier-weights", default=None, help="the embedded verifier's weights (default: shipped)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", default="runs/quality", help="folder for the synthesized runs (resumable)")
    parser.add_argument("--report", default="benchmarks/results/quality_embedded.md", help="Markdown report path")
    args = parser.parse_args()
    if not 1 <= args.classes <= len(CLASS_NAMES) or args.stimuli < 1:
        parser.error(f"--classes must be in 1..{len(CLASS_NAMES)} and --stimuli >= 1")
    return args


def _slug(overrides: dict) -> str:
    return "_".join(f"{key}-{value}" for key, value in sorted(overrides.items())).replace("+", "plus") or "leaps"


def _synthesize(out: Path, setting: dict, stimulus_set: int, args: argparse.Namespace) -> None:
    """One run of `leaps-engine synthesize`: every class, stimulus set ``stimulus_set`` (generated with its
    own seeds)."""
    if (out / "result.json").exists():
        return  # finished earlier
    command = ["synthesize", "--out", str(out), "--seed", str(1000 * (stimulus_set + 1)), "--device", args.device,
               *[option for i in range(args.classes) for option in ("--class", str(i))],
               *[option for key, value in setting.items() for option in (f"--{key.replace('_', '-')}", str(value))]]
    for option, value in (("--steps", args.steps), ("--weights", args.weights),
                          ("--verifier-weights", args.verifier_weights)):
        if value is not None:
            command += [option, str(value)]
    with contextlib.redirect_stdout(io.StringIO()):
        leaps_engine_cli.main(command, prog_name="leaps-engine")


def _evaluate(runs: Path, args: argparse.Namespace) -> list[dict]:
    _, rows = evaluate_results([str(runs)], evaluator=args.evaluator, device=torch.device(args.device),
                               group_by=GROUP_KEYS)
    return rows


def _write_figure(path: Path, leaps_runs: Path, args: argparse.Namespace) -> None:
    """One row per class: the stimulus frames, then the synthesized frames (first stimulus set)."""
    summary = json.loads((leaps_runs / "stimuli_0" / "result.json").read_text())
    rows = []
    for clip in summary["clips"]:
        stimulus = torch.load(leaps_runs / "stimuli_0" / clip["stimulus_tensor"], weights_only=True)
        video = torch.load(leaps_runs / "stimuli_0" / clip["tensor"], weights_only=True)
        gap = torch.ones(3, 1, *video.shape[2:])  # a white frame between stimulus and synthesized
        rows.append((f"{clip['target_class']}: stimulus | LEAPS", torch.cat([stimulus, gap, video], dim=1)))
    with atomic_path(path) as temporary:
        video_files.write_contact_sheet(temporary, rows, scale=2)


def _report(rows: list[dict], figure: Path, args: argparse.Namespace, seconds: float) -> str:
    by_setting = {tuple(row[key] for key in GROUP_KEYS): row for row in rows}
    lines = [
        "# Synthesis quality on the embedded domain",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/quality.py', *sys.argv[1:]])}`  ",
        (f"{args.classes} classes x {args.stimuli} generated stimuli per setting, steps "
        f"{args.steps or 'of the preset'}; device {args.device}; torch {torch.__version__}; python "
        f"{platform.python_version()}; {seconds / 60:.1f} min in all.  "),
        (f"Classifier weights {args.weights or 'shipped'}, verifier weights {args.verifier_weights or 'shipped'}.  "),
        (f"Accuracies are top-1 in percent under the inverted model (m), the verifier (v, whose BatchNorm "
        f"statistics shape LEAPS's videos) and the independent evaluator (e, `{args.evaluator}`, never used in "
        f"synthesis); IS is the Inception Score under m and v (mean ± std over splits)."),
    ]
    for table in dict.fromkeys(name for name, _, _ in SETTINGS):
        lines += ["", f"## {table}", "", ("| setting | n | top-1 m | top-1 v | top-1 e | IS m | IS v | "
                  "PSNR / SSIM (consecutive frames) |"), "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, label, overrides in SETTINGS:
            if name == table:
                row = by_setting[tuple({**BASE, **overrides}[key] for key in GROUP_KEYS)]
                lines.append(_table_row(label, row))
    lines += ["", f"![one LEAPS clip per class beside its stimulus]({figure.name})", ""]
    return "\n".join(lines)


def _table_row(label: str, row: dict) -> str:
    def pct(value):
        return "-" if value is None else f"{value:.1f}"

    def score(value):
        return "-" if value is None else f"{value['mean']:.2f} ± {value['std']:.2f}"

    frames = ("-" if row.get("psnr_synthesized") is None
              else f"{row['psnr_synthesized']:.1f} / {row['ssim_synthesized']:.3f}")
    return (f"| {label} | {row['n_videos']} | {pct(row['top1_model'])} | {pct(row['top1_verifier'])} | "
            f"{pct(row['top1_evaluator'])} | {score(row['inception_score_model'])} | "
            f"{score(row['inception_score_verifier'])} | {frames} |")


if __name__ == "__main__":
    main()
