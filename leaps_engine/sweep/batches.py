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

from leaps_engine._io import atomic_path, deferred_interrupts, hold_point
from leaps_engine.config import SynthesisConfig
from leaps_engine.engine.adapters import create_adapter, get_adapter_entry
from leaps_engine.engine.stimulus import LoadedStimulus, load_stimulus
from leaps_engine.engine.synthesis import Target, resolve_class, synthesize
from leaps_engine.errors import LeapsError, one_line
from leaps_engine.jobs import build_verifier, hold_while_optimising
from leaps_engine.outputs.results import RESULT_FILE, class_slug, run_summary, write_clip
from leaps_engine.sweep.manifest import Job

RESULTS_DIR = "results"
PARTIAL_DIR = ".partial"


@dataclass
class JobOutcome:
    """What became of one job: ``status`` is ``done``, ``failed`` (with a one-line ``error``; retried by a
    rerun) or ``invalid`` (its own input is wrong, e.g. an unknown class or an unreadable stimulus: final)."""

    job_id: str
    status: str
    error: str | None = None
    seconds: float = 0.0


def result_dir(out: Path, job: Job) -> Path:
    """The job's result folder: ``OUT/results/<model>/<class name>/<job id>``."""
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

    A job that cannot be prepared (unknown class, unreadable stimulus) fails alone; if synthesis fails
    for a batch of several jobs, each is run again alone, so one bad job fails only itself. Errors are
    returned, never raised, so no job stops a sweep.
    """
    try:
        model_entry = get_adapter_entry(jobs[0].model)
        config = _config(jobs[0])
    except Exception as error:  # any error of a job's settings fails its jobs, not the sweep
        return [_failure(job, error) for job in jobs]
    targets: dict[int, Target] = {}
    outcomes: dict[int, JobOutcome] = {}
    for index, job in enumerate(jobs):
        try:
            targets[index] = _target(job, model_entry, config)
        except Exception as error:  # unknown class, unreadable or corrupt stimulus, ...
            outcomes[index] = _failure(job, error)
    ready = list(targets)
    together = _run_together([jobs[index] for index in ready], list(targets.values()), config, out, device, fps)
    outcomes.update(zip(ready, together, strict=True))
    return [outcomes[index] for index in range(len(jobs))]


def _failure(job: Job, error: Exception) -> JobOutcome:
    """A job that could not be prepared: ``invalid`` when its own input is wrong (a :class:`LeapsError`:
    another attempt would fail the same way), else ``failed``."""
    return JobOutcome(job.job_id, "invalid" if isinstance(error, LeapsError) else "failed", one_line(error))


def remove_partial(out: Path) -> None:
    """Delete the leftovers of jobs that were being written when an earlier sweep was killed."""
    shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)


def _config(job: Job) -> SynthesisConfig:
    return SynthesisConfig.from_preset(job.model, seed=job.seed, **job.settings())


def _target(job: Job, model_entry, config: SynthesisConfig) -> Target:
    """The job's target, its stimuli decoded now (once: synthesis takes the decoded pixels), so that a bad
    one fails this job only."""
    label = resolve_class(job.label, model_entry.spec.class_names, job.model)
    if job.stimulus:
        spec, size = model_entry.spec, config.size
        stimuli = [LoadedStimulus(load_stimulus(path, spec, size), spec, size) for path in job.stimulus]
        return Target(label, stimuli if len(stimuli) > 1 else stimuli[0], seed=job.seed)
    if not config.uses_stimulus:
        return Target(label, seed=job.seed)
    if model_entry.stimulus_source is None:
        raise LeapsError(f"job {job.job_id}: {job.model} needs a stimulus")
    return Target(label, model_entry.stimulus_source(label, job.seed), seed=job.seed)


def _run_together(jobs: list[Job], targets: list[Target], config: SynthesisConfig, out: Path, device: str,
                  fps: int) -> list[JobOutcome]:
    """Synthesize prepared ``jobs`` as one batch and write each; a failed batch of several is run job by job."""
    if not jobs:
        return []
    started = time.perf_counter()
    try:
        run = _synthesize(jobs[0], targets, config, torch.device(device))
    except Exception as error:  # engine, model or memory errors: this batch failed
        if len(jobs) > 1:
            return [outcome for job, target in zip(jobs, targets, strict=True)
                    for outcome in _run_together([job], [target], config, out, device, fps)]
        return [JobOutcome(jobs[0].job_id, "failed", one_line(error))]
    seconds = (time.perf_counter() - started) / len(jobs)
    outcomes = []
    for index, job in enumerate(jobs):
        try:
            _write_job(run, index, job, targets[index], config, out, fps)
        except Exception as error:  # a full disk or a lost mount fails this job's folder only
            outcomes.append(JobOutcome(job.job_id, "failed", f"cannot write its result: {one_line(error)}"))
        else:
            outcomes.append(JobOutcome(job.job_id, "done", seconds=seconds))
    return outcomes


@dataclass
class _BatchRun:
    """A synthesized batch and what its summaries name."""

    model: object
    weights: str
    verifier: object
    verifier_weights: str | None
    result: object
    seconds: float
    device: torch.device


def _synthesize(first: Job, targets: list[Target], config: SynthesisConfig, device: torch.device) -> _BatchRun:
    model = create_adapter(first.model, weights=first.weights, device=device)
    verifier, verifier_weights = build_verifier(model, first.verifier, first.verifier_weights, device)
    started = time.perf_counter()
    result = synthesize(model, targets, verifier=verifier, config=config, callbacks=[hold_while_optimising])
    return _BatchRun(model, model.weights, verifier, verifier_weights, result,
                     time.perf_counter() - started, device)


def _write_job(run: _BatchRun, index: int, job: Job, target: Target, config: SynthesisConfig, out: Path,
               fps: int) -> None:
    """Build video ``index`` of ``run``'s folder under ``OUT/.partial/`` and rename it into place."""
    partial = out / PARTIAL_DIR / f"{job.job_id}-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        stimulus = " + ".join(job.stimulus) or (f"generated (seed {job.seed})" if target.stimulus is not None else None)
        clip = write_clip(run.result, index, partial / "clip", partial, fps, stimulus, [])
        summary = run_summary(run.model, run.weights, run.verifier, run.verifier_weights,
                              config.replace(seed=job.seed), run.result, [clip], run.seconds, run.device, "torch")
        summary["job"] = {"id": job.job_id, **job.to_record(), "batch_size": len(run.result.videos)}
        with atomic_path(partial / RESULT_FILE) as temporary:
            temporary.write_text(json.dumps(summary, indent=2))
        _move_into_place(partial, result_dir(out, job))
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone once renamed; what an error or interruption left


def _move_into_place(partial: Path, final: Path) -> None:
    """Rename the complete folder onto its final path, interruptions held for it; a result already there
    wins (no duplicate)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with deferred_interrupts():
        hold_point(f"publish {final.name}")
        try:
            os.rename(partial, final)
        except OSError:
            if not (final / RESULT_FILE).is_file():
                raise
