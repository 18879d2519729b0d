"""Running sweep batches as Ray tasks (``pip install "leaps-engine[distributed]"``).

Each batch is one task that reserves ``gpus_per_task`` GPUs (Ray sets ``CUDA_VISIBLE_DEVICES`` so the
task sees only its own, as ``cuda``) and ``cpus_per_task`` CPUs, runs torch with the sweep's thread count
(Ray would give it one), and writes its jobs' result folders itself, so the output folder must be on
storage every node shares. Ray is imported only here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from leaps_engine._features import require
from leaps_engine.errors import LeapsError, one_line
from leaps_engine.sweep.batches import JobOutcome, run_batch
from leaps_engine.sweep.manifest import Job
from leaps_engine.sweep.runner import Executor


def ray_executor(
    address: str, gpus_per_task: float, cpus_per_task: int, local_cpus: int | None, threads: int
) -> Executor:
    """An executor on the Ray cluster at ``address`` (``auto``, ``HOST:PORT``), or on a new local cluster
    (``local``, with ``local_cpus`` CPUs, default all); each task runs torch with ``threads`` threads."""
    ray = require("ray", "--ray-address")
    if gpus_per_task < 0 or cpus_per_task < 1:
        raise LeapsError(f"--gpus-per-task must be >= 0 and --cpus-per-task >= 1, got {gpus_per_task} and "
                         f"{cpus_per_task}")

    def execute(batches: list[list[Job]], out: Path) -> Iterator[tuple[list[JobOutcome], int]]:
        _connect(ray, address, local_cpus)
        try:
            _check_resources(ray, gpus_per_task, cpus_per_task)
            task = ray.remote(num_gpus=gpus_per_task, num_cpus=cpus_per_task, max_retries=0)(_ray_batch)
            device = "cuda" if gpus_per_task > 0 else "cpu"
            pending = {task.remote(batch, str(out.resolve()), device, threads): batch
                       for batch in batches}
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                batch = pending.pop(ready)
                try:
                    outcomes = ray.get(ready)
                except Exception as error:  # a worker that died or a task Ray could not run
                    cause = getattr(error, "cause", None) or error  # RayTaskError wraps the task's own error
                    outcomes = [JobOutcome(job.job_id, "failed", f"Ray task failed: {one_line(cause)}")
                                for job in batch]
                yield outcomes, sum(len(b) for b in pending.values())
        finally:
            ray.shutdown()

    return execute


def _connect(ray, address: str, local_cpus: int | None) -> None:
    try:
        if address == "local":  # always a new cluster, never one that RAY_ADDRESS or `ray start` points to
            ray.init(address="local", num_cpus=local_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise LeapsError(f"cannot connect to the Ray cluster at {address}: {one_line(error)}") from None


def _check_resources(ray, gpus_per_task: float, cpus_per_task: int) -> None:
    """Fail now, rather than wait forever, when no node of the cluster could run a task."""
    available = ray.cluster_resources()
    gpus, cpus = available.get("GPU", 0), available.get("CPU", 0)
    if gpus_per_task > gpus or cpus_per_task > cpus:
        raise LeapsError(f"a task needs {gpus_per_task:g} GPU(s) and {cpus_per_task} CPU(s), but the Ray cluster "
                         f"has {gpus:g} GPU(s) and {cpus:g} CPU(s) in all")


def _ray_batch(jobs: list[Job], out: str, device: str, threads: int) -> list[JobOutcome]:
    """The body of one Ray task: a batch on this worker, with ``threads`` CPU threads."""
    import torch

    torch.set_num_threads(threads)
    return run_batch(jobs, Path(out), device)
