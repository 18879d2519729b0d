"""Sweep throughput on the embedded model: the same manifest in this process and on a local Ray cluster.

    python benchmarks/sweep_throughput.py                 # 24 jobs (12 classes x 2 seeds), preset steps
    python benchmarks/sweep_throughput.py --seeds 1 --steps 20 --report /tmp/t.md

Each configuration runs ``leaps-engine sweep run`` on a fresh folder (so nothing is skipped) and the
throughput is finished videos per minute of the whole command (Ray's start-up included). Writes
``benchmarks/results/sweep_throughput_embedded.md`` with the command, machine and versions.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from leaps_engine._features import package_version
from leaps_engine._io import atomic_path
from leaps_engine.engine.embedded.generator import CLASS_NAMES
from leaps_engine.sweep.manifest import Job, write_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per class (default 2: 24 jobs)")
    parser.add_argument("--steps", type=int, default=None, help="steps per job (default: the preset's)")
    parser.add_argument("--report", default="benchmarks/results/sweep_throughput_embedded.md")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    configurations = [
        ("in-process, batch 8", ["--batch-size", "8"]),
        ("in-process, batch 1", ["--batch-size", "1"]),
        (f"local Ray, {cpus} CPUs, 1 CPU per task, batch 4",
         ["--ray-address", "local", "--local-cpus", str(cpus), "--batch-size", "4"]),
        (f"local Ray, {cpus} CPUs, 1 CPU per task, batch 1",
         ["--ray-address", "local", "--local-cpus", str(cpus), "--batch-size", "1"]),
    ]
    jobs = [Job(str(label), seed=1000 * (seed + 1) + label, steps=args.steps)
            for seed in range(args.seeds) for label in range(len(CLASS_NAMES))]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        manifest = Path(folder) / "manifest.csv"
        write_manifest(manifest, jobs)
        for name, options in configurations:
            out = Path(folder) / "out"
            shutil.rmtree(out, ignore_errors=True)
            command = [sys.executable, "-m", "leaps_engine", "sweep", "run", str(manifest), "--out", str(out), *options]
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
            minutes = (time.perf_counter() - started) / 60
            rows.append((name, " ".join(options), minutes, len(jobs) / minutes))
            print(f"{name}: {minutes:.2f} min, {len(jobs) / minutes:.1f} videos/min", flush=True)
    steps = args.steps or "the preset's (300)"
    lines = [
        "# Sweep throughput, embedded model",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/sweep_throughput.py', *sys.argv[1:]])}`  ",
        (f"{len(jobs)} jobs ({len(CLASS_NAMES)} classes x {args.seeds} seeds), 8x32x32, steps {steps}, float32; "
         f"{cpus} CPUs ({platform.processor() or platform.machine()}), no GPU; torch {torch.__version__}, "
         f"python {platform.python_version()}, ray {package_version('ray')}.  "),
        "Wall time of the whole `leaps-engine sweep run` command, start-up and file writing included.",
        "",
        "| configuration | options | minutes | videos / min |",
        "|---|---|---:|---:|",
        *[f"| {name} | `{options}` | {minutes:.2f} | {rate:.1f} |" for name, options, minutes, rate in rows],
        "",
    ]
    with atomic_path(args.report) as temporary:
        Path(temporary).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
