"""``leaps-engine sweep``: plan a manifest, run it (in-process or on Ray), report on it.

Manifests, batching and the runners are in :mod:`leaps_engine.sweep`. Output layout of ``sweep run --out DIR``::

    results/<model>/<class>/<job id>/result.json   one finished job (a synthesize result folder)
    results/<model>/<class>/<job id>/clip/...      its video.mp4, video.gif, contact_sheet.png, video.pt
    sweep_log.jsonl                                every attempt: time, job, status, error, seconds
    .partial/                                      jobs being written (removed when a sweep starts)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from leaps_engine.cli.console import user_errors
from leaps_engine.cli.options import device_option, setting_options, table_options, threads_option, weights_option
from leaps_engine.errors import LeapsError


@click.group()
def sweep() -> None:
    """Many synthesis jobs from a manifest: plan one, run it (here or on a Ray cluster), report on it.

    A manifest (.csv or .jsonl) holds one job per row: class (required), model, weights, stimulus (paths
    joined by '|'), seed, steps, size, method, objective, distance, priming_layers, lambda_first,
    lambda_last, r, verifier, verifier_weights; an empty cell takes the preset's value.
    """


@sweep.command("plan")
@click.argument("stimuli_root", type=click.Path(), metavar="STIMULI")
@click.option("--out", required=True, type=click.Path(), help="Manifest to write (.csv or .jsonl).")
@click.option("--model", "models", multiple=True, help="Model of every job; repeat to cross (default: embedded).")
@click.option("--seed", "seeds", type=int, multiple=True, help="Seed; repeat to cross (default: 0).")
@click.option("--labels", type=click.Path(), default=None,
              help="CSV with columns path,class (paths relative to it) instead of class sub-folders.")
@weights_option("Model weights of every job, as in synthesize.")
@setting_options
def sweep_plan(stimuli_root: str, out: str, models: tuple[str, ...], seeds: tuple[int, ...], labels: str | None,
               **settings: object) -> None:
    """Write a manifest: every stimulus under STIMULI x every --model x every --seed.

    A stimulus's class is the name of its sub-folder (STIMULI/<class>/<video, tensor or frame folder>),
    or its row in --labels. The settings are those of every job (default: each model's preset).
    """
    with user_errors():
        run_plan(stimuli_root=stimuli_root, models=models, seeds=seeds, labels=labels, out=out, settings=settings)


@sweep.command("run")
@click.argument("manifest", type=click.Path(), metavar="MANIFEST")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Sweep folder (results, log).")
@click.option("--batch-size", type=int, default=8, show_default=True,
              help="Jobs with the same model and settings synthesized together (a speed-up only).")
@click.option("--max-attempts", type=int, default=3, show_default=True,
              help="A job that failed this many times (over all runs of the sweep) is not tried again.")
@device_option("Torch device when running in this process.")
@click.option("--ray-address", default=None, metavar="auto|HOST:PORT|local",
              help="Run batches as Ray tasks on this cluster ('local' starts one here); default: in this process.")
@click.option("--gpus-per-task", type=float, default=0.0, show_default=True,
              help="GPUs each Ray task reserves (1 on a GPU cluster: each batch runs on its own GPU as cuda).")
@click.option("--cpus-per-task", type=int, default=None,
              help="CPUs each Ray task reserves (default: the sweep's thread count, --threads).")
@click.option("--local-cpus", type=int, default=None, help="CPUs of the cluster that --ray-address local starts.")
@click.option("--report", is_flag=True,
              help="At the end, write DIR/report.html over every finished job (as `leaps-engine report DIR/results`).")
@threads_option
def sweep_run(**options: object) -> None:
    """Run every unfinished job of MANIFEST; rerun the same command to resume or retry.

    Finished jobs are skipped, failed ones retried (up to --max-attempts), and each result folder
    appears only when complete. Exit status 1 if a job failed.
    """
    with user_errors():
        finished = run_sweep_command(**options)
    sys.exit(0 if finished else 1)


@sweep.command("report")
@click.argument("sweep_dir", type=click.Path(), metavar="DIR")
@click.option("--evaluator", default=None, metavar="NAME", help="Also score every clip with this network.")
@click.option("--evaluator-weights", default=None, help="Evaluator weights (default: its pretrained weights).")
@device_option("Torch device of the scoring networks.")
@table_options
@click.option("--group-by", default=None, metavar="KEYS",
              help="Comma-separated result.json keys (default: model,method,objective).")
@threads_option
def sweep_report(**options: object) -> None:
    """The quality table (as `evaluate` prints it) over every finished job of the sweep in DIR."""
    with user_errors():
        run_report(**options)


SWEEP_GROUP_BY = ("model", "method", "objective")


def run_plan(*, stimuli_root: str, models: tuple[str, ...], seeds: tuple[int, ...], labels: str | None, out: str,
             settings: dict) -> None:
    """Run ``leaps-engine sweep plan``: one job per stimulus x model x seed, written to ``out``."""
    from leaps_engine._io import atomic_path
    from leaps_engine.engine.adapters import get_adapter_entry
    from leaps_engine.sweep.manifest import plan_jobs, write_manifest

    models, seeds = models or ("embedded",), seeds or (0,)
    for model in models:
        get_adapter_entry(model)  # an unknown model fails before anything is written
    jobs = plan_jobs(stimuli_root, models, seeds, labels,
                     {key: value for key, value in settings.items() if value is not None})
    if Path(out).suffix.lower() not in (".csv", ".jsonl"):
        raise LeapsError(f"{out}: a manifest is a .csv or .jsonl file")
    with atomic_path(out) as temporary:
        write_manifest(temporary, jobs)
    classes = len({job.label for job in jobs})
    click.echo(f"wrote {out}: {len(jobs)} jobs ({classes} classes, {len(models)} model(s), {len(seeds)} seed(s))")


def run_sweep_command(*, manifest: str, out_dir: str, batch_size: int, max_attempts: int, device: str,
                      ray_address: str | None, gpus_per_task: float, cpus_per_task: int | None,
                      local_cpus: int | None, report: bool = False) -> bool:
    """Run ``leaps-engine sweep run``; returns whether every job of the manifest is finished.

    Every executor runs the jobs with this process's torch thread count (``--threads``), so a job gives
    the same video in this process and on Ray.
    """
    import torch

    from leaps_engine._io import exclusive_output
    from leaps_engine.jobs import prepare_out_dir
    from leaps_engine.sweep.manifest import read_manifest

    threads = torch.get_num_threads()

    jobs = read_manifest(manifest)
    out = Path(out_dir)
    prepare_out_dir(out)
    with exclusive_output(out):  # one run of a sweep folder at a time
        finished = _run_locked(jobs, out, batch_size, max_attempts, device, ray_address, gpus_per_task,
                               cpus_per_task, local_cpus, threads)
        if report:
            _write_sweep_report(out, device if ray_address is None else "cpu")
        return finished


def _write_sweep_report(out: Path, device: str) -> None:
    from leaps_engine.cli.report import report_after_run
    from leaps_engine.outputs.results import RESULT_FILE, files_under
    from leaps_engine.sweep.batches import RESULTS_DIR

    if not (out / RESULTS_DIR).is_dir() or not files_under(out / RESULTS_DIR, RESULT_FILE):
        click.echo(f"no finished job in {out}: no report written", err=True)
        return
    report_after_run([out / RESULTS_DIR], out / "report.html", device)


def _run_locked(jobs, out, batch_size, max_attempts, device, ray_address, gpus_per_task, cpus_per_task, local_cpus,
                threads) -> bool:
    from leaps_engine.jobs import check_device
    from leaps_engine.sweep.batches import RESULTS_DIR
    from leaps_engine.sweep.runner import LOG_FILE, in_process_executor, plan_sweep, run_sweep

    plan = plan_sweep(jobs, out, batch_size, max_attempts)
    if ray_address is None:
        check_device(device)
        executor, where = in_process_executor(device), f"in this process on {device}"
    else:
        from leaps_engine.sweep.ray_executor import ray_executor

        cpus_per_task = threads if cpus_per_task is None else cpus_per_task
        executor = ray_executor(ray_address, gpus_per_task, cpus_per_task, local_cpus, threads)
        where = f"on Ray ({ray_address}), {gpus_per_task:g} GPU / {cpus_per_task} CPU per task"
    where += f", {threads} torch thread(s) per job"
    click.echo(f"{len(jobs)} jobs: {len(plan.finished)} finished earlier, {len(plan.given_up)} given up (invalid "
               f"input, or {max_attempts} failures), {plan.to_run} to run in {len(plan.batches)} batches {where}")
    progress = _SweepProgress(plan.to_run)
    try:
        outcomes = run_sweep(plan, out, executor, on_batch=progress.update)
    finally:
        progress.close()
    failed = [outcome for outcome in outcomes if outcome.status != "done"]
    done = len(outcomes) - len(failed)
    click.echo(f"{done} done, {len(failed)} failed in {progress.minutes:.1f} min ({progress.rate:.1f} videos/min); "
               f"{len(plan.finished) + done}/{len(jobs)} finished; results in {out / RESULTS_DIR}, "
               f"log {out / LOG_FILE}")
    for outcome in failed[:10]:
        final = " (invalid input: not retried)" if outcome.status == "invalid" else ""
        click.echo(f"failed {outcome.job_id}{final}: {outcome.error}", err=True)
    if len(failed) > 10:
        click.echo(f"... and {len(failed) - 10} more failures (see {out / LOG_FILE})", err=True)
    if plan.given_up:
        click.echo(f"{len(plan.given_up)} job(s) given up: invalid input or {max_attempts} failed attempts (errors in "
                   f"{out / LOG_FILE}): {', '.join(job.job_id for job in plan.given_up[:10])}", err=True)
    return not failed and not plan.given_up


def run_report(*, sweep_dir: str, evaluator: str | None, evaluator_weights: str | None, device: str,
               output_format: str, out: str | None, group_by: str | None) -> None:
    """Run ``leaps-engine sweep report``: the quality table over every finished job of a sweep."""
    from leaps_engine.cli.evaluate import run_evaluate
    from leaps_engine.sweep.batches import RESULTS_DIR

    results = Path(sweep_dir) / RESULTS_DIR
    if not results.is_dir():
        raise LeapsError(f"{sweep_dir} holds no sweep results (no {RESULTS_DIR}/ folder)")
    run_evaluate(paths=[str(results)], evaluator=evaluator, evaluator_weights=evaluator_weights, device=device,
                 output_format=output_format, out=out, group_by=group_by or SWEEP_GROUP_BY,
                 command=f"leaps-engine sweep report {sweep_dir}")


class _SweepProgress:
    """A bar over the jobs to run: done, failed and running jobs, and videos per minute."""

    def __init__(self, total: int):
        from leaps_engine.cli.progress import LazyBar

        self.bar = LazyBar(total=total, desc="sweep", unit="video")
        self.started = time.perf_counter()
        self.done = self.failed = 0

    def update(self, outcomes: list, running: int) -> None:  # JobOutcome
        finished = sum(outcome.status == "done" for outcome in outcomes)
        self.done += finished
        self.failed += len(outcomes) - finished
        self.bar.update(len(outcomes))
        self.bar.set_postfix(done=self.done, failed=self.failed, running=running, per_min=f"{self.rate:.1f}")

    @property
    def minutes(self) -> float:
        return (time.perf_counter() - self.started) / 60

    @property
    def rate(self) -> float:
        return self.done / self.minutes if self.minutes > 0 else 0.0

    def close(self) -> None:
        self.bar.close()
