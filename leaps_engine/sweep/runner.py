"""Driving a sweep: which jobs still need running, how they are batched, where they run, what is logged.

The result folders are the truth about what is finished: a rerun of the same sweep skips every job whose
folder is complete, retries jobs that failed before until they have failed ``max_attempts`` times (a job
whose own input is wrong, logged ``invalid``, is never retried), and re-runs jobs that were in flight when
a sweep was killed. Every attempt is appended to
``OUT/sweep_log.jsonl`` (one JSON object a line: time, job, status, error, seconds).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from leaps_engine.errors import LeapsError
from leaps_engine.sweep.batches import JobOutcome, is_finished, remove_partial, run_batch
from leaps_engine.sweep.manifest import Job

LOG_FILE = "sweep_log.jsonl"

# An executor runs batches and yields, as each batch finishes, its outcomes and how many jobs are still
# running (for progress).
Executor = Callable[[list[list[Job]], Path], Iterator[tuple[list[JobOutcome], int]]]


@dataclass
class SweepPlan:
    """The jobs of a manifest sorted into finished, given up (failed too often) and to run (in batches)."""

    finished: list[Job] = field(default_factory=list)
    given_up: list[Job] = field(default_factory=list)
    batches: list[list[Job]] = field(default_factory=list)

    @property
    def to_run(self) -> int:
        return sum(len(batch) for batch in self.batches)


def plan_sweep(jobs: Sequence[Job], out: Path, batch_size: int, max_attempts: int) -> SweepPlan:
    """Sort ``jobs`` (duplicates dropped) by their state under ``out`` and batch the ones to run."""
    if batch_size < 1 or max_attempts < 1:
        raise LeapsError(f"--batch-size and --max-attempts must be >= 1, got {batch_size} and {max_attempts}")
    failures = failure_counts(out)
    plan = SweepPlan()
    groups: dict[tuple, list[Job]] = {}
    for job in {job.job_id: job for job in jobs}.values():
        if is_finished(out, job):
            plan.finished.append(job)
        elif failures.get(job.job_id, 0) >= max_attempts:
            plan.given_up.append(job)
        else:
            groups.setdefault(job.batch_key(), []).append(job)
    for group in groups.values():
        plan.batches += [group[start:start + batch_size] for start in range(0, len(group), batch_size)]
    return plan


def run_sweep(plan: SweepPlan, out: Path, executor: Executor,
              on_batch: Callable[[list[JobOutcome], int], None] | None = None) -> list[JobOutcome]:
    """Run the plan's batches with ``executor``, logging every outcome; ``on_batch(outcomes, running)``
    follows progress. Returns all outcomes."""
    out.mkdir(parents=True, exist_ok=True)
    remove_partial(out)
    outcomes: list[JobOutcome] = []
    if not plan.batches:
        return outcomes  # nothing to run: no executor (nor Ray cluster) needed
    log_path = out / LOG_FILE
    torn = _ends_mid_line(log_path)
    with log_path.open("a") as log:
        if torn:
            log.write("\n")  # end the line a killed sweep left half-written, so the next entry stays readable
        for batch_outcomes, running in executor(plan.batches, out):
            log.write("".join(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "job": outcome.job_id,
                                          "status": outcome.status, "error": outcome.error,
                                          "seconds": round(outcome.seconds, 3)}) + "\n"
                              for outcome in batch_outcomes))
            log.flush()
            outcomes += batch_outcomes
            if on_batch is not None:
                on_batch(batch_outcomes, running)
    return outcomes


def _ends_mid_line(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def failure_counts(out: Path) -> dict[str, int]:
    """How many attempts of each job failed, from the sweep log (a torn last line is ignored); a job once
    logged ``invalid`` counts as failed for good (``sys.maxsize``)."""
    counts: dict[str, int] = {}
    path = out / LOG_FILE
    if not path.exists():
        return counts
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the sweep was killed while writing this line
        if not (isinstance(entry, dict) and isinstance(entry.get("job"), str)):
            continue
        if entry.get("status") == "invalid":
            counts[entry["job"]] = sys.maxsize
        elif entry.get("status") == "failed":
            counts[entry["job"]] = min(counts.get(entry["job"], 0) + 1, sys.maxsize)
    return counts


def in_process_executor(device: str) -> Executor:
    """Run batches one after another in this process."""

    def execute(batches: list[list[Job]], out: Path) -> Iterator[tuple[list[JobOutcome], int]]:
        for index, batch in enumerate(batches):
            following = batches[index + 1] if index + 1 < len(batches) else []
            yield run_batch(batch, out, device), len(following)

    return execute
