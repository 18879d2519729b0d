"""The ``leaps-engine evaluate`` job: score synthesized videos of result folders, grouped by their settings.

Part of the CLI (with :mod:`leaps_engine.cli`). Inputs are result folders written by
``leaps-engine synthesize`` (each holds a ``result.json``), parent folders searched recursively, or manifests
(``.txt``, one path a line, ``#`` comments; ``.json``, a list of paths; relative paths are resolved against
the manifest's folder). Every clip's saved tensor is re-scored by the run's model and verifier and by an
optional ``--evaluator``; targets are matched to each network's classes by name (a class the network lacks
counts as wrong). Runs are grouped by ``--group-by`` keys read from result.json (``model`` and ``verifier``
are the network names, the rest come from ``config``), and each group gets top-1/5 accuracy, the mean
target probability, the Inception Score and consecutive-frame PSNR / SSIM (:mod:`leaps_engine.engine.metrics`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shlex
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click
import torch

from leaps_engine._io import atomic_path, is_junk, read_text
from leaps_engine.cli_progress import LazyBar
from leaps_engine.engine import metrics
from leaps_engine.engine.adapters import create_adapter, get_adapter_entry
from leaps_engine.export.backends import FORWARD_BACKENDS, ForwardBackend, create_forward_backend
from leaps_engine.errors import LeapsError, close_names, one_line

RESULT_FILE = "result.json"
DEFAULT_GROUP_BY = ("model", "method", "objective", "distance", "priming_layers", "verifier")
CONFIG_DEFAULTS = {"method": "leaps", "objective": "full"}  # result.json files written before these existed
ROLES = ("model", "verifier", "evaluator")
FORMATS = ("md", "csv", "json")


@dataclass
class Run:
    """One result.json: its path and its contents."""

    path: Path
    summary: dict


@dataclass
class GroupScores:
    """What the runs of one group add up to; per role: lists of ``[B, K]`` probs and ``[B]`` targets."""

    runs: int = 0
    probs: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {role: [] for role in ROLES})
    targets: dict[str, list[torch.Tensor]] = field(default_factory=lambda: {role: [] for role in ROLES})
    frames: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # "psnr_synthesized" -> [B] tensors


def run_evaluate(
    *, paths: Sequence[str], evaluator: str | None = None, evaluator_weights: str | None = None,
    device: str = "cpu", batch_size: int = 16, splits: int = 10, output_format: str = "md",
    out: str | None = None, group_by: str | Sequence[str] | None = None, command: str | None = None,
    forward_backend: str = "torch",
) -> list[dict]:
    """Run ``leaps-engine evaluate``: print the table (and write it to ``out``); return the group dicts."""
    from leaps_engine.cli_synthesize import check_device

    if batch_size < 1 or splits < 1:
        raise LeapsError(f"--batch-size and --splits must be >= 1, got {batch_size} and {splits}")
    if output_format not in FORMATS:
        raise LeapsError(f"unknown --format {output_format!r}; use one of {', '.join(FORMATS)}")
    if forward_backend not in FORWARD_BACKENDS:
        raise LeapsError(f"unknown forward backend {forward_backend!r}; use one of {', '.join(FORWARD_BACKENDS)}")
    if out is not None:
        _check_writable(Path(out))
    torch_device = check_device(device)
    if evaluator is not None:
        evaluator_weights = evaluator_weights or get_adapter_entry(evaluator).pretrained  # unknown name: fails early
    elif evaluator_weights is not None:
        raise LeapsError("--evaluator-weights needs --evaluator")
    keys = _parse_group_by(group_by)
    runs = [_load_run(path) for path in find_result_files(paths)]
    _check_group_keys(runs, keys)
    cache = NetworkCache(torch_device, forward_backend, batch_size)
    judge = None if evaluator is None else cache.get(evaluator, evaluator_weights)
    groups: dict[tuple, GroupScores] = {}
    progress = LazyBar(total=sum(len(run.summary["clips"]) for run in runs), desc="evaluating", unit="clip")
    try:
        for run in runs:
            networks = {**_run_networks(run, cache), "evaluator": judge}
            group = groups.setdefault(tuple(_key_value(run.summary, key) for key in keys), GroupScores())
            _score_run(run, networks, group, batch_size, torch_device, progress)
    finally:
        progress.close()
    rows = [{**dict(zip(keys, key, strict=True)), **_summarize(scores, splits, evaluator)}
            for key, scores in groups.items()]
    command = command or shlex.join(["leaps-engine", "evaluate", *map(str, paths)])
    judged_by = f"{evaluator} ({evaluator_weights} weights)" if evaluator else "none"
    header = f"evaluator {judged_by}, device {torch_device}, forward backend {forward_backend}, command: {command}"
    text = format_rows(rows, keys, output_format, header)
    click.echo(text, nl=False)
    if out is not None:
        with atomic_path(out) as temporary:
            Path(temporary).write_text(text)
    return rows


def find_result_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The result.json files named by ``paths`` (folders searched recursively, manifests read), deduplicated."""
    if not paths:
        raise LeapsError("give at least one result folder, parent folder or manifest")
    found: dict[Path, None] = {}
    for path in paths:
        for result in _expand(Path(path), allow_manifest=True):
            found.setdefault(result.resolve(), None)
    return list(found)


def _expand(path: Path, allow_manifest: bool) -> list[Path]:
    if not path.exists():
        raise LeapsError(f"path not found: {path}")
    if path.is_dir():
        results = sorted(result for result in path.rglob(RESULT_FILE)  # not in hidden (e.g. unfinished) folders
                         if not any(is_junk(Path(part)) for part in result.relative_to(path).parts[:-1]))
        if not results:
            raise LeapsError(f"no {RESULT_FILE} found under {path}")
        return results
    if path.name == RESULT_FILE:
        return [path]
    if allow_manifest and path.suffix.lower() in (".txt", ".json"):
        return [result for entry in _read_manifest(path) for result in _expand(entry, allow_manifest=False)]
    raise LeapsError(f"{path} is not a result folder, a {RESULT_FILE} or a manifest (.txt or .json)")


def _read_manifest(path: Path) -> list[Path]:
    text = read_text(path, "manifest")
    try:
        if path.suffix.lower() == ".json":
            entries = json.loads(text)
            if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
                raise LeapsError(f"manifest {path} must hold a JSON list of paths")
        else:
            entries = [line.strip() for line in text.splitlines()]
            entries = [entry for entry in entries if entry and not entry.startswith("#")]
    except json.JSONDecodeError as error:
        raise LeapsError(f"cannot read manifest {path}: {one_line(error)}") from None
    if not entries:
        raise LeapsError(f"manifest {path} lists no paths")
    return [path.parent / Path(entry).expanduser() for entry in entries]


def _load_run(path: Path) -> Run:
    try:
        summary = json.loads(read_text(path, "result file"))
    except json.JSONDecodeError as error:
        raise LeapsError(f"cannot read {path}: {one_line(error)}") from None
    problem = _result_problem(summary)
    if problem:
        raise LeapsError(f"{path} is not a leaps-engine {RESULT_FILE}: {problem}")
    return Run(path, summary)


def _result_problem(summary: object) -> str | None:
    if not isinstance(summary, dict):
        return "not a JSON object"
    if not isinstance(summary.get("model"), dict) or "name" not in summary["model"]:
        return "no 'model' with a 'name'"
    verifier = summary.get("verifier")
    if verifier is not None and (not isinstance(verifier, dict) or "name" not in verifier):
        return "'verifier' is neither null nor an object with a 'name'"
    if not isinstance(summary.get("config", {}), dict):
        return "'config' is not an object"
    clips = summary.get("clips")
    if not isinstance(clips, list) or not clips:
        return "no 'clips'"
    if not all(isinstance(clip, dict) and {"target_class", "tensor"} <= set(clip) for clip in clips):
        return "a clip lacks 'target_class' or 'tensor'"
    return None


def _parse_group_by(group_by: str | Sequence[str] | None) -> tuple[str, ...]:
    if group_by is None:
        return DEFAULT_GROUP_BY
    items = group_by.split(",") if isinstance(group_by, str) else group_by
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


def _check_group_keys(runs: list[Run], keys: tuple[str, ...]) -> None:
    known = {"model", "verifier", *CONFIG_DEFAULTS}
    for run in runs:
        known.update(run.summary.get("config", {}))
    for key in keys:
        if key not in known:
            raise LeapsError(f"unknown --group-by key {key!r}{close_names(key, sorted(known))}")


def _key_value(summary: dict, key: str) -> object:
    if key == "model":
        return summary["model"]["name"]
    if key == "verifier":
        return "none" if summary.get("verifier") is None else summary["verifier"]["name"]
    value = summary.get("config", {}).get(key, CONFIG_DEFAULTS.get(key))
    return "x".join(map(str, value)) if isinstance(value, list) else value


class NetworkCache:
    """Each scoring network, built once per (name, weights) and run through the chosen forward backend."""

    def __init__(self, device: torch.device, forward_backend: str, batch_size: int):
        self.device = device
        self.forward_backend = forward_backend
        self.max_batch = max(2, batch_size)  # TensorRT sizes its engine for the largest batch
        self.networks: dict[tuple[str, str], ForwardBackend] = {}

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.networks

    def get(self, name: str, weights: str | None) -> ForwardBackend:
        """The network ``name`` with ``weights`` (default: pretrained)."""
        weights = weights or get_adapter_entry(name).pretrained
        if (name, weights) not in self.networks:
            adapter = create_adapter(name, weights=weights, device=self.device)
            self.networks[name, weights] = create_forward_backend(self.forward_backend, adapter, weights=weights,
                                                                  max_batch=self.max_batch)
        return self.networks[name, weights]


def _run_networks(run: Run, cache: NetworkCache) -> dict[str, ForwardBackend]:
    """The run's model and (if any) verifier, re-created from the names and weights in its result.json."""
    networks = {}
    for role in ("model", "verifier"):
        if run.summary.get(role) is not None:
            name, weights = run.summary[role]["name"], run.summary[role].get("weights")
            if weights == "random" and (name, weights) not in cache:
                warnings.warn(f"{run.path}: the {role} {name} had random weights, which cannot be re-created")
            networks[role] = cache.get(name, weights)
    return networks


def _score_run(run: Run, networks: dict, scores: GroupScores, batch_size: int, device: torch.device,
               progress: LazyBar) -> None:
    clips = run.summary["clips"]
    scores.runs += 1
    for start in range(0, len(clips), batch_size):
        batch = clips[start : start + batch_size]
        videos = [_load_video(run.path, clip["tensor"]) for clip in batch]
        if len({video.shape for video in videos}) > 1:
            raise LeapsError(f"the clips of {run.path} have different sizes")
        videos = torch.stack(videos).to(device)  # [B, 3, T, H, W]
        for role, network in networks.items():
            if network is not None:
                names = [clip["target_class"] for clip in batch]
                scores.probs[role].append(_probabilities(network, videos))
                scores.targets[role].append(_target_indices(names, network.adapter.spec.class_names))
        _add_frame_scores(scores, "synthesized", videos)
        for clip in batch:
            if clip.get("stimulus_tensor"):
                stimulus = _load_video(run.path, clip["stimulus_tensor"])[None].to(device)
                _add_frame_scores(scores, "stimulus", stimulus)
        progress.update(len(batch))


def _load_video(result_file: Path, relative: str) -> torch.Tensor:
    """A saved clip ``[3, T, H, W]`` in [0, 1], by its path relative to result.json's folder."""
    path = result_file.parent / relative
    try:
        video = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a missing or corrupt file
        raise LeapsError(f"cannot read tensor {path}: {one_line(error, 160)}") from None
    if not isinstance(video, torch.Tensor) or video.dim() != 4 or video.shape[0] != 3:
        raise LeapsError(f"{path} does not hold a video tensor [3, T, H, W]")
    return video.float()


def _probabilities(network: ForwardBackend, videos: torch.Tensor) -> torch.Tensor:
    """Softmax ``[B, K]`` (on the CPU) of ``network`` on pixels ``[B, 3, T, H, W]``; the adapter resizes."""
    return network.logits(network.adapter.spec.normalize(videos)).softmax(-1).cpu()


def _target_indices(names: list[str], class_names: Sequence[str]) -> torch.Tensor:
    """``[B]`` indices of the target names in ``class_names`` (case-insensitive); -1 where missing."""
    lookup = {name.strip().lower(): index for index, name in enumerate(class_names)}
    return torch.tensor([lookup.get(str(name).strip().lower(), -1) for name in names], dtype=torch.long)


def _add_frame_scores(scores: GroupScores, kind: str, videos: torch.Tensor) -> None:
    scores.frames.setdefault(f"psnr_{kind}", []).append(metrics.consecutive_frame_psnr(videos))
    scores.frames.setdefault(f"ssim_{kind}", []).append(metrics.consecutive_frame_ssim(videos))


def _summarize(scores: GroupScores, splits: int, evaluator: str | None) -> dict:
    """One group's row. Verifier metrics cover the runs that have a verifier (all of them unless
    ``verifier`` was left out of --group-by); frame metrics ignore NaN (single-frame clips)."""
    row: dict = {"n_runs": scores.runs, "n_videos": sum(len(t) for t in scores.targets["model"]),
                 "evaluator": evaluator}
    per_role = {role: _role_metrics(scores, role, splits) for role in ROLES}
    for metric in ("top1", "top5", "target_prob"):
        row.update({f"{metric}_{role}": per_role[role][metric] for role in ROLES})
    row.update({f"inception_score_{role}": per_role[role]["inception_score"] for role in ROLES})
    for name in ("psnr_synthesized", "ssim_synthesized", "psnr_stimulus", "ssim_stimulus"):
        values = torch.cat(scores.frames[name]) if name in scores.frames else torch.empty(0)
        row[name] = _number(values.nanmean().item()) if values.numel() else None
    return row


def _role_metrics(scores: GroupScores, role: str, splits: int) -> dict:
    """Accuracies (percent), mean target probability and IS of one role; all None without that network."""
    probs_list, targets_list = scores.probs[role], scores.targets[role]
    if not probs_list:
        return dict.fromkeys(("top1", "top5", "target_prob", "inception_score"))
    if len({probs.shape[1] for probs in probs_list}) > 1:
        raise LeapsError(f"a group mixes {role} networks with different class lists; add '{role}' to --group-by")
    probs, targets = torch.cat(probs_list), torch.cat(targets_list)
    mean, std = metrics.inception_score(probs, splits)
    return {"top1": metrics.topk_accuracy(probs, targets, 1), "top5": metrics.topk_accuracy(probs, targets, 5),
            "target_prob": metrics.mean_target_probability(probs, targets),
            "inception_score": {"mean": _number(mean), "std": _number(std)}}


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _check_writable(out: Path) -> None:
    folder = out.parent
    if out.is_dir():
        raise LeapsError(f"--out {out} is a folder; give a file name")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise LeapsError(f"cannot write {out}: folder {folder} does not exist or is not writable")


def format_rows(rows: list[dict], keys: Sequence[str], output_format: str, header: str) -> str:
    """The group dicts as a Markdown table (after a ``header`` line), flat CSV, or a JSON list."""
    if output_format == "json":
        return json.dumps(rows, indent=2) + "\n"
    if output_format == "csv":
        flat = [_flatten(row) for row in rows]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(flat[0]) if flat else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(flat)
        return buffer.getvalue()
    columns = [*keys, "n", "top-1 m / v / e", "top-5 m / v / e", "IS m / v (mean ± std)",
               "PSNR / SSIM synthesized", "PSNR / SSIM stimulus"]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [*(str(row[key]) for key in keys), str(row["n_videos"]),
                 " / ".join(_cell(row[f"top1_{role}"], ".1f") for role in ROLES),
                 " / ".join(_cell(row[f"top5_{role}"], ".1f") for role in ROLES),
                 " / ".join(_score_cell(row[f"inception_score_{role}"]) for role in ("model", "verifier")),
                 f"{_cell(row['psnr_synthesized'], '.2f')} / {_cell(row['ssim_synthesized'], '.3f')}",
                 f"{_cell(row['psnr_stimulus'], '.2f')} / {_cell(row['ssim_stimulus'], '.3f')}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _flatten(row: dict) -> dict:
    flat = {}
    for key, value in row.items():
        if isinstance(value, dict):
            flat.update({f"{key}_{inner}": item for inner, item in value.items()})
        elif key.startswith("inception_score_") and value is None:
            flat.update({f"{key}_mean": None, f"{key}_std": None})
        else:
            flat[key] = value
    return flat


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _score_cell(score: dict | None) -> str:
    return "-" if score is None or score["mean"] is None else f"{score['mean']:.2f} ± {score['std']:.2f}"
