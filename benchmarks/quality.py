"""Synthesis quality on the embedded domain, in the shape of the paper's Tables 1, 2, 3 and S2, and the
space-time priors table.

For every setting (the three methods; LEAPS with each priming distance, each objective ablation and
each share of priming layers; the paper's pixels against each space-time prior, their combination and
the baselines under the same priors) it synthesizes every class with several generated stimuli, scores
all videos with ``leaps-engine evaluate`` (inverted model, verifier, and an independent evaluator that
never took part in synthesis; frame PSNR / SSIM, the high-frequency ratio and the motion figure), and
writes a Markdown report with the tables, figures and the exact command. The priors table also gives
the norm of each loss term's input gradient at the first and the last step.

    python benchmarks/quality.py                      # Tables 1, 2, 3, S2 (committed results)
    python benchmarks/quality.py --tables priors --report benchmarks/results/priors_embedded.md --figures docs/images
    python benchmarks/quality.py --classes 2 --stimuli 1 --steps 5 --runs /tmp/q --report /tmp/q.md

Finished runs are kept under ``--runs`` and skipped when the command is repeated, so an interrupted
run resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import torch
from tqdm import tqdm

from leaps_engine._io import atomic_path
from leaps_engine.cli import main as leaps_engine_cli
from leaps_engine.config import MAX_LAYERS, PRESETS
from leaps_engine.engine.embedded.generator import CLASS_NAMES
from leaps_engine.evaluation import MOTION_MATCH_THRESHOLD, evaluate_results
from leaps_engine.outputs import video as video_files
from leaps_engine.outputs.results import config_value

# The paper's setting (pixels, no transformations, the config's decays) and the embedded preset's default
# (its further settings over the paper's). Tables 1, 2, 3 and S2 vary one thing of the default; the priors
# table names every setting in full, so its "LEAPS (paper)" row is the paper's whatever the default.
PAPER = {"parameterization": "pixel", "jitter": 0, "scale_jitter": 0.0, "time_shift": 0,
         "spatial_decay": 1.0, "temporal_decay": 1.0, "warp_grid": 8, "moving_layers": MAX_LAYERS, "restarts": 1,
         "motion_sparsity": 0.0}
DEFAULT = {**PAPER, **dict(PRESETS["embedded"].settings)}
BASE = {"method": "leaps", "objective": "full", "distance": "jvs", "priming_layers": 1.0, **DEFAULT}
FOURIER = {**PAPER, "parameterization": "fourier"}
WARP = {**PAPER, "parameterization": "warp"}
LAYERS = {**PAPER, "parameterization": "layers"}
SHIFTS = {"jitter": 2, "time_shift": 1}  # random spatial and temporal shifts
TRANSFORMATIONS = {**SHIFTS, "scale_jitter": 0.1}  # and a random zoom
PRIORS_TABLE = "Space-time priors"
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
    (PRIORS_TABLE, "LEAPS (paper)", PAPER),
    (PRIORS_TABLE, "LEAPS + Fourier", FOURIER),
    (PRIORS_TABLE, "LEAPS + shifts", {**PAPER, **SHIFTS}),
    (PRIORS_TABLE, "LEAPS + shifts and zoom", {**PAPER, **TRANSFORMATIONS}),
    (PRIORS_TABLE, "LEAPS + Fourier + shifts and zoom", {**FOURIER, **TRANSFORMATIONS}),
    (PRIORS_TABLE, "LEAPS + Fourier + shifts", {**FOURIER, **SHIFTS}),
    (PRIORS_TABLE, "LEAPS + Fourier + shifts, spatial decay 1.5", {**FOURIER, **SHIFTS, "spatial_decay": 1.5}),
    (PRIORS_TABLE, "LEAPS + Fourier + shifts, spatial decay 1.5, temporal decay 2",
     {**FOURIER, **SHIFTS, "spatial_decay": 1.5, "temporal_decay": 2.0}),
    (PRIORS_TABLE, "LEAPS + warp", WARP),
    (PRIORS_TABLE, "LEAPS + warp + shifts", {**WARP, **SHIFTS}),
    (PRIORS_TABLE, "LEAPS + warp + shifts, grid 4", {**WARP, **SHIFTS, "warp_grid": 4}),
    (PRIORS_TABLE, "LEAPS + warp + shifts, grid 16", {**WARP, **SHIFTS, "warp_grid": 16}),
    (PRIORS_TABLE, "LEAPS + layers", LAYERS),
    (PRIORS_TABLE, "LEAPS + layers + shifts", {**LAYERS, **SHIFTS}),
    *[(PRIORS_TABLE, f"LEAPS + layers, {count} largest moving", {**LAYERS, "moving_layers": count})
      for count in (1, 2, 3)],
    (PRIORS_TABLE, "LEAPS + layers + shifts, 2 largest moving", {**LAYERS, **SHIFTS, "moving_layers": 2}),
    (PRIORS_TABLE, "LEAPS + layers, 2 largest moving, best of 4 restarts",
     {**LAYERS, "moving_layers": 2, "restarts": 4}),
    *[(PRIORS_TABLE, f"LEAPS + layers, 2 largest moving, best of 4 restarts, motion sparsity {weight}",
       {**LAYERS, "moving_layers": 2, "restarts": 4, "motion_sparsity": weight}) for weight in (0.1, 0.15, 0.3)],
    (PRIORS_TABLE, "3D DeepDream (paper)", {**PAPER, "method": "deepdream"}),
    (PRIORS_TABLE, "3D DeepDream + the default's priors", {**DEFAULT, "method": "deepdream"}),
    (PRIORS_TABLE, "3D AM (paper)", {**PAPER, "method": "am"}),
    (PRIORS_TABLE, "3D AM + the default's priors", {**DEFAULT, "method": "am"}),
]
TABLES = {"1": "Table 1: methods", "2": "Table 2: priming distance", "3": "Table 3: objective",
          "S2": "Table S2: priming layers", "priors": PRIORS_TABLE}
GROUP_KEYS = ("method", "objective", "distance", "priming_layers", *PAPER)
FIGURE_CLASSES = ("moving right", "rotating clockwise", "growing", "approaching")


def main() -> None:
    args = _parse_args()
    started = time.perf_counter()
    chosen = [TABLES[key] for key in args.tables.split(",")]
    rows_wanted = [(table, label, overrides) for table, label, overrides in SETTINGS if table in chosen]
    settings = {_slug(overrides): {**BASE, **overrides} for _, _, overrides in rows_wanted}
    if PRIORS_TABLE in chosen:
        settings.setdefault(_slug({}), BASE)  # the default, for the figures
    runs = Path(args.runs)
    jobs = [(slug, setting, s) for slug, setting in settings.items() for s in range(args.stimuli)]
    for slug, setting, stimulus_set in jobs:  # before anything is synthesized
        _refuse_another_setting(runs / slug / f"stimuli_{stimulus_set}", setting)
    synthesized = sum(_synthesize(runs / slug / f"stimuli_{stimulus_set}", setting, stimulus_set, args)
                      for slug, setting, stimulus_set in tqdm(jobs, desc="settings x stimulus sets", unit="run"))
    rows = _evaluate([runs / slug for slug in settings], args)
    report, figure_folder = Path(args.report), Path(args.figures or Path(args.report).parent)
    figure_folder.mkdir(parents=True, exist_ok=True)
    figures = []
    if any(table != PRIORS_TABLE for table in chosen):
        figures.append(figure_folder / f"{report.stem}.png")
        _write_figure(figures[-1], runs / _slug({}), args)
    gradients = []
    if PRIORS_TABLE in chosen:
        every_setting = [(label, o) for t, label, o in rows_wanted if t == PRIORS_TABLE]
        paper_and_default = [("LEAPS (paper)", PAPER), ("LEAPS (the default)", {})]
        class_names = CLASS_NAMES[:args.classes]
        for suffix, sheet_settings, classes in (
            ("_contact_sheets.png", every_setting, FIGURE_CLASSES),
            ("_paper_and_default.png", paper_and_default, FIGURE_CLASSES),
            ("_paper_and_default_all_classes.png", paper_and_default, class_names),
        ):
            figures.append(figure_folder / f"{report.stem}{suffix}")
            _write_priors_figure(figures[-1], runs, sheet_settings, classes)
        gradients = _gradient_table(args)
    runs_note = f"{synthesized} of {len(jobs)} runs synthesized by this call, the rest reused from --runs"
    text = _report(rows, rows_wanted, figures, gradients, args, time.perf_counter() - started, runs_note)
    with atomic_path(args.report) as temporary:
        Path(temporary).write_text(text)
    print(text)


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
    parser.add_argument("--figures", default=None,
                        help="folder for the figures (default: the report's; the report links them relatively)")
    parser.add_argument("--tables", default="1,2,3,S2",
                        help=f"comma-separated, of {', '.join(TABLES)} (default 1,2,3,S2)")
    args = parser.parse_args()
    if not 1 <= args.classes <= len(CLASS_NAMES) or args.stimuli < 1:
        parser.error(f"--classes must be in 1..{len(CLASS_NAMES)} and --stimuli >= 1")
    if not args.tables or not set(args.tables.split(",")) <= set(TABLES):
        parser.error(f"--tables takes a comma-separated list of {', '.join(TABLES)}")
    return args


def _slug(overrides: dict) -> str:
    """The run folder's name: the setting's differences from BASE (so one setting is synthesized once)."""
    changed = {key: value for key, value in {**BASE, **overrides}.items() if BASE[key] != value}
    return "_".join(f"{key}-{value}" for key, value in sorted(changed.items())).replace("+", "plus") or "leaps"


def _refuse_another_setting(out: Path, setting: dict) -> None:
    """Exit with one ``error:`` line (status 2) if ``out`` holds a finished run of a setting other than
    ``setting``: a folder named for an earlier default must not be reused as this one."""
    if not (out / "result.json").exists():
        return
    summary = json.loads((out / "result.json").read_text())
    found = {key: config_value(summary, key) for key in setting}
    differing = [key for key, value in setting.items() if found[key] != value]
    if differing:
        key = differing[0]
        print(f"error: {out} holds a run with {key} = {found[key]!r}, not {setting[key]!r}: "
              "move it away, or give another --runs folder", file=sys.stderr)
        raise SystemExit(2)


def _synthesize(out: Path, setting: dict, stimulus_set: int, args: argparse.Namespace) -> bool:
    """One run of `leaps-engine synthesize`: every class, stimulus set ``stimulus_set`` (generated with its
    own seeds). False when the run had finished earlier and is reused."""
    if (out / "result.json").exists():
        return False
    command = ["synthesize", "--out", str(out), "--seed", str(1000 * (stimulus_set + 1)), "--device", args.device,
               *[option for i in range(args.classes) for option in ("--class", str(i))],
               *[option for key, value in setting.items() for option in (f"--{key.replace('_', '-')}", str(value))]]
    for option, value in (("--steps", args.steps), ("--weights", args.weights),
                          ("--verifier-weights", args.verifier_weights)):
        if value is not None:
            command += [option, str(value)]
    with contextlib.redirect_stdout(io.StringIO()):
        leaps_engine_cli.main(command, prog_name="leaps-engine")
    return True


def _evaluate(folders: list[Path], args: argparse.Namespace) -> list[dict]:
    _, rows = evaluate_results([str(folder) for folder in folders], evaluator=args.evaluator,
                               device=torch.device(args.device), group_by=GROUP_KEYS)
    return rows


def _write_priors_figure(path: Path, runs: Path, settings: list[tuple[str, dict]], classes: Sequence[str]) -> None:
    """Contact sheets of ``classes`` (first stimulus set): per class its stimulus, then one row per setting."""
    folders = [runs / _slug(overrides) / "stimuli_0" for _, overrides in settings]
    clips = [{c["target_class"]: c for c in json.loads((folder / "result.json").read_text())["clips"]}
             for folder in folders]  # per setting: class -> its clip entry, read once
    rows = []
    for name in classes:
        for index, ((label, _), folder) in enumerate(zip(settings, folders, strict=True)):
            clip = clips[index].get(name)
            if clip is None:
                continue
            if index == 0 and "stimulus_tensor" in clip:
                rows.append((f"{name}: stimulus", torch.load(folder / clip["stimulus_tensor"], weights_only=True)))
            rows.append((f"{name}: {label}", torch.load(folder / clip["tensor"], weights_only=True)))
    with atomic_path(path) as temporary:
        video_files.write_contact_sheet(temporary, rows, scale=2)


def _gradient_table(args: argparse.Namespace) -> list[str]:
    """Median norm over the classes of each weighted term's input gradient, first and last step, for the
    paper's setting and the default (stimulus set 0)."""
    from leaps_engine import SynthesisConfig, Target, create_adapter, synthesize

    model = create_adapter("embedded", weights=args.weights or "embedded")
    verifier = create_adapter("embedded_verifier", weights=args.verifier_weights or "embedded")
    lines = ["| setting | step | CE | L_prim | r R_coh | r R_feat |", "|---|---|---:|---:|---:|---:|"]
    for label, overrides in (("LEAPS (paper)", PAPER), ("LEAPS (the default)", {})):
        setting = {key: value for key, value in {**BASE, **overrides}.items() if key != "priming_layers"}
        config = SynthesisConfig.from_preset("embedded", seed=1000, steps=args.steps, **setting)
        targets = [Target(i, seed=1000 + i) for i in range(args.classes)]
        result = synthesize(model, targets, verifier=verifier, config=config, measure_term_gradients=True)
        for step, norms in result.term_gradients.items():
            cells = " | ".join(f"{norms[t].median().item():.1e}" for t in ("ce", "priming", "coherence", "feature"))
            lines.append(f"| {label} | {step} | {cells} |")
    return lines


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


def _report(rows: list[dict], wanted: list[tuple], figures: list[Path], gradients: list[str],
            args: argparse.Namespace, seconds: float, runs_note: str) -> str:
    by_setting = {tuple(row[key] for key in GROUP_KEYS): row for row in rows}
    lines = [
        "# Synthesis quality on the embedded domain",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/quality.py', *sys.argv[1:]])}`  ",
        (f"{args.classes} classes x {args.stimuli} generated stimuli per setting, steps "
        f"{args.steps or 'of the preset'}; device {args.device}; torch {torch.__version__}; OpenCV "
        f"{cv2.__version__} (the layers, the inpainting and the optical flow); python "
        f"{platform.python_version()}; {seconds / 60:.1f} min in all ({runs_note}).  "),
        (f"Classifier weights {args.weights or 'shipped'}, verifier weights {args.verifier_weights or 'shipped'}.  "),
        (f"Accuracies are top-1 in percent under the inverted model (m), the verifier (v, whose BatchNorm "
        f"statistics shape LEAPS's videos) and the independent evaluator (e, `{args.evaluator}`, never used in "
        f"synthesis); IS is the Inception Score under m and v (mean ± std over splits). PSNR (dB) / SSIM of "
        f"consecutive frames (stimuli: about 24 dB / 0.87); pixel std: the per-frame standard deviation of the "
        f"pixels over the stimulus's; HF: the high-frequency ratio (synthesized over stimulus; real clips 1.0); "
        f"motion: the mean motion similarity to the stimulus and the classes whose mean reaches "
        f"{MOTION_MATCH_THRESHOLD} (docs/quality.md)."),
    ]
    for table in dict.fromkeys(name for name, _, _ in wanted):
        lines += ["", f"## {table}", "", ("| setting | n | top-1 m | top-1 v | top-1 e | IS m | IS v | "
                  "PSNR / SSIM | pixel std | HF | motion |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, label, overrides in wanted:
            if name == table:
                row = by_setting[tuple({**BASE, **overrides}[key] for key in GROUP_KEYS)]
                lines.append(_table_row(label, row))
    default = by_setting.get(tuple(BASE[key] for key in GROUP_KEYS))
    if default and default.get("motion_similarity_per_class"):
        lines += ["", "## Motion figure per class at the default", "",
                  (f"Mean motion similarity of the default's videos to their stimuli, per class (matched: at least "
                   f"{MOTION_MATCH_THRESHOLD}; real clips of each class against each other: "
                   "benchmarks/results/motion_figure_real_clips.md)."), "", "| class | motion | matched |",
                  "|---|---:|---|"]
        lines += [f"| {name} | {mean:.3f} | {'yes' if mean >= MOTION_MATCH_THRESHOLD else 'no'} |"
                  for name, mean in default["motion_similarity_per_class"].items()]
    if gradients:
        lines += ["", "## Input-gradient norm of each term", "",
                  "Median over the classes of the L2 norm of each weighted term's gradient with respect to the "
                  "objective's input video, at the first and the last step (stimulus set 0).", "", *gradients]
    links = [Path(os.path.relpath(figure, Path(args.report).parent)).as_posix() for figure in figures]
    lines += ["", *[f"![{Path(link).stem}]({link})" for link in links], ""]
    return "\n".join(lines)


def _table_row(label: str, row: dict) -> str:
    def pct(value):
        return "-" if value is None else f"{value:.1f}"

    def score(value):
        return "-" if value is None else f"{value['mean']:.2f} ± {value['std']:.2f}"

    frames = ("-" if row.get("psnr_synthesized") is None
              else f"{row['psnr_synthesized']:.1f} / {row['ssim_synthesized']:.3f}")
    ratio = "-" if row.get("high_frequency_ratio") is None else f"{row['high_frequency_ratio']:.2f}"
    spread = ("-" if row.get("pixel_std_ratio") is None
              else f"{row['pixel_std_ratio']:.2f} (min {row['pixel_std_ratio_min']:.2f})")
    motion = ("-" if row.get("motion_similarity") is None else
              f"{row['motion_similarity']:.2f} ({row['motion_classes_matched']}/{row['motion_classes']})")
    return (f"| {label} | {row['n_videos']} | {pct(row['top1_model'])} | {pct(row['top1_verifier'])} | "
            f"{pct(row['top1_evaluator'])} | {score(row['inception_score_model'])} | "
            f"{score(row['inception_score_verifier'])} | {frames} | {spread} | {ratio} | {motion} |")


if __name__ == "__main__":
    main()
