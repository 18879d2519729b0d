"""Running one batch of sweep jobs and writing each job's result folder atomically.

A batch is a list of jobs with the same :meth:`Job.batch_key` (model, weights and settings). The
engine's statistics are per video, so a batch gives every job the video it would get alone; batching is
only a speed-up. Each job's folder is built under ``OUT/.partial/`` and renamed into place when complete,
so ``OUT/results/`` never holds a half-written job, whatever kills the process.

This module writes files (it is part of the command layer, like the ``cli_*`` modules); it runs the
same way in the sweep's own process and inside a Ray task.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from leaps_engine.config import Acceleration, SynthesisConfig
from leaps_engine.engine.adapters import create_adapter, get_adapter_entry
from leaps_engine.engine.synthesis import Target, resolve_class, synthesize
from leaps_engine.errors import LeapsError, one_line
from leaps_engine.sweep.manifest import Job

RESULTS_DIR = "results"
PARTIAL_DIR = ".partial"
RESULT_FILE = "result.json"


@dataclass
class JobOutcome:
    """What became of one job: ``status`` is ``done`` or ``failed`` (with a one-line ``error``)."""

    job_id: str
    status: str
    error: str | None = None
    seconds: float = 0.0


def result_dir(out: Path, job: Job) -> Path:
    """The job's result folder: ``OUT/results/<model>/<class name>/<job id>``."""
    from leaps_engine.cli_synthesize import class_slug

    try:
        names = get_adapter_entry(job.model).spec.class_names
        label = names[resolve_class(job.label, names, job.model)]
    except LeapsError:
        label = job.label  # a job that cannot run; it never gets a folder
    return out / RESULTS_DIR / job.model / class_slug(label) / job.job_id


def is_finished(out: Path, job: Job) -> bool:
    return (result_dir(out, job) / RESULT_FILE).is_file()


def run_batch(jobs: list[Job], out: Path, device: str = "cpu", fps: int = 5) -> list[JobOutcome]:
    """Synthesize ``jobs`` (one batch key) together and write each finished job's folder.

    A job that cannot be prepared (unknown class, unreadable stimulus) fails alone; an error during
    synthesis fails the whole batch. Errors are returned, never raised, so one bad job never stops a sweep.
    """
    started = time.perf_counter()
    targets: dict[int, Target] = {}
    outcomes: dict[int, JobOutcome] = {}
    try:
        model_entry = get_adapter_entry(jobs[0].model)
        config = _config(jobs[0])
    except (LeapsError, OSError, ValueError) as error:
        return [JobOutcome(job.job_id, "failed", one_line(error)) for job in jobs]
    for index, job in enumerate(jobs):
        try:
            targets[index] = _target(job, model_entry, config)
        except (LeapsError, OSError, ValueError) as error:
            outcomes[index] = JobOutcome(job.job_id, "failed", one_line(error))
    if targets:
        ready = [jobs[index] for index in targets]
        try:
            _synthesize_and_write(ready, list(targets.values()), config, out, torch.device(device), fps)
        except (LeapsError, OSError, RuntimeError, ValueError) as error:
            message = one_line(error)
            outcomes.update({index: JobOutcome(jobs[index].job_id, "failed", message) for index in targets})
        else:
            seconds = (time.perf_counter() - started) / len(ready)
            outcomes.update({index: JobOutcome(jobs[index].job_id, "done", seconds=seconds) for index in targets})
    return [outcomes[index] for index in range(len(jobs))]


def remove_partial(out: Path) -> None:
    """Delete the leftovers of jobs that were being written when an earlier sweep was killed."""
    shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)


def _config(job: Job) -> SynthesisConfig:
    return SynthesisConfig.from_preset(
        job.model, steps=job.steps, size=job.size, seed=job.seed, lambda_first=job.lambda_first,
        lambda_last=job.lambda_last, r=job.r, distance=job.distance, priming_layers=job.priming_layers,
        method=job.method, objective=job.objective,
    )


def _target(job: Job, model_entry, config: SynthesisConfig) -> Target:
    """The job's target, its stimuli checked now so that a bad one fails this job only."""
    from leaps_engine.engine.stimulus import load_stimulus

    label = resolve_class(job.label, model_entry.spec.class_names, job.model)
    if job.stimulus:
        for path in job.stimulus:
            load_stimulus(path, model_entry.spec)
        stimulus = list(job.stimulus) if len(job.stimulus) > 1 else job.stimulus[0]
        return Target(label, stimulus, seed=job.seed)
    if not config.uses_stimulus:
        return Target(label, seed=job.seed)
    if model_entry.family != "embedded":
        raise LeapsError(f"job {job.job_id}: {job.model} needs a stimulus")
    from leaps_engine.engine.embedded.generator import generate_stimulus

    return Target(label, generate_stimulus(label, seed=job.seed), seed=job.seed)


def _synthesize_and_write(jobs: list[Job], targets: list[Target], config: SynthesisConfig, out: Path,
                          device: torch.device, fps: int) -> None:
    from leaps_engine.cli_synthesize import build_verifier, run_summary, write_clip

    first = jobs[0]
    model = create_adapter(first.model, weights=first.weights, device=device)
    weights = first.weights or get_adapter_entry(first.model).pretrained
    verifier, verifier_weights = build_verifier(model, first.weights, first.verifier, first.verifier_weights, device)
    acceleration = Acceleration()
    started = time.perf_counter()
    result = synthesize(model, targets, verifier=verifier, config=config, acceleration=acceleration)
    seconds = time.perf_counter() - started
    for index, job in enumerate(jobs):
        partial = out / PARTIAL_DIR / f"{job.job_id}-{os.getpid()}-{secrets.token_hex(3)}"
        stimulus = " + ".join(job.stimulus) or (f"generated (seed {job.seed})" if targets[index].stimulus is not None
                                                else None)
        clip = write_clip(result, index, partial / "clip", partial, fps, stimulus, [])
        summary = run_summary(model, weights, verifier, verifier_weights, config.replace(seed=job.seed), acceleration,
                              result, [clip], seconds, device, "torch")
        summary["job"] = {"id": job.job_id, **job.to_record(), "batch_size": len(jobs)}
        (partial / RESULT_FILE).write_text(json.dumps(summary, indent=2))
        _move_into_place(partial, result_dir(out, job))


def _move_into_place(partial: Path, final: Path) -> None:
    """Rename the complete folder onto its final path; a result already there wins (no duplicate)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(partial, final)
    except OSError:
        if not (final / RESULT_FILE).is_file():
            raise
        shutil.rmtree(partial, ignore_errors=True)
