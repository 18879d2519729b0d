"""Sweep manifests: one synthesis job per row, read from and written to CSV or JSON Lines.

A job names its model (and weights), one target class, the stimuli that prime it, a seed and any
settings that differ from the model's preset. Columns (CSV) or keys (JSON Lines)::

    model, weights, class, stimulus, seed, steps, size, method, objective, distance, priming_layers,
    lambda_first, lambda_last, r, verifier, verifier_weights

Only ``class`` is required. ``stimulus`` holds one path, or several joined with ``|`` in CSV (a list in
JSON Lines) for multi-stimulus priming; relative paths are resolved against the manifest's folder.
``size`` is ``TxHxW``. An empty cell means "the preset's value". The embedded model generates a
stimulus from the seed when none is given.

Each job has an id, a hash of its settings, so the same row always maps to the same result folder.
Stimulus paths enter the hash as absolute paths: moving the stimuli makes new jobs.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path

from leaps_engine._io import read_text, visible_entries
from leaps_engine.config import SETTING_FIELDS, SynthesisConfig
from leaps_engine.errors import LeapsError

MANIFEST_SUFFIXES = (".csv", ".jsonl")
STIMULUS_SEPARATOR = "|"


class _JobMethods:
    """What every :class:`Job` can do (its fields are declared below, from the settings of config.py)."""

    @property
    def job_id(self) -> str:
        """16 hex digits of the SHA-256 of the job's settings (stimulus paths absolute), stable across runs."""
        text = json.dumps(self.to_record(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def settings(self) -> dict[str, object]:
        """The job's :class:`SynthesisConfig` overrides (``None``: the preset's), seed apart."""
        return {name: getattr(self, name) for name in SETTING_FIELDS if name != "seed"}

    def batch_key(self) -> tuple:
        """Jobs with equal keys can share one batch: everything but the class, stimuli and seed."""
        return tuple(value for name, value in self._fields() if name not in ("label", "stimulus", "seed"))

    def to_record(self) -> dict:
        """The job as a JSON-ready dict without unset fields (``class`` for ``label``)."""
        record = {}
        for name, value in self._fields():
            if value is None or value == ():
                continue
            record["class" if name == "label" else name] = list(value) if isinstance(value, tuple) else value
        return record

    def _fields(self) -> list[tuple[str, object]]:
        return [(field.name, getattr(self, field.name)) for field in dataclasses.fields(self)]


def _value_type(annotation: object) -> object:
    """``X`` for an annotation ``X`` or ``X | None``."""
    arguments = [argument for argument in typing.get_args(annotation) if argument is not type(None)]
    return arguments[0] if isinstance(annotation, types.UnionType) and len(arguments) == 1 else annotation


# The type of each setting, from SynthesisConfig's annotations (int, float, str, or a size tuple).
SETTING_TYPES = {name: _value_type(typing.get_type_hints(SynthesisConfig)[name]) for name in SETTING_FIELDS}

# One synthesized video: a class of a model, primed by ``stimulus`` (paths), from ``seed``, with every
# setting of SETTING_FIELDS as a field of its own (None: the preset's; the seed defaults to 0).
Job = dataclasses.make_dataclass(
    "Job",
    [("label", str), ("model", str, dataclasses.field(default="embedded")),
     ("weights", str | None, dataclasses.field(default=None)),
     ("stimulus", tuple[str, ...], dataclasses.field(default=())),
     *[(name, SETTING_TYPES[name] if name == "seed" else SETTING_TYPES[name] | None,
        dataclasses.field(default=0 if name == "seed" else None)) for name in SETTING_FIELDS],
     ("verifier", str | None, dataclasses.field(default=None)),
     ("verifier_weights", str | None, dataclasses.field(default=None))],
    bases=(_JobMethods,), frozen=True,
)
Job.__module__ = __name__  # for pickling (Ray ships jobs to its workers)
Job.__doc__ = "One synthesized video: a class of a model, primed by ``stimulus`` (paths), from ``seed``."

COLUMNS = tuple("class" if field.name == "label" else field.name for field in dataclasses.fields(Job))


def read_manifest(path: str | Path) -> list[Job]:
    """The jobs of a ``.csv`` or ``.jsonl`` manifest, stimulus paths made absolute.

    Raises:
        LeapsError: the file is missing or unreadable, or a row is invalid (named by its line).
    """
    path = Path(path)
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise LeapsError(f"{path}: a manifest is a .csv or .jsonl file")
    text = read_text(path, "manifest")
    rows = _csv_rows(text, path) if path.suffix.lower() == ".csv" else _jsonl_rows(text, path)
    try:
        jobs = [_job_from_row(row, path, line) for line, row in rows]
    except csv.Error as error:
        raise LeapsError(f"manifest {path} is not valid CSV ({error})") from None
    if not jobs:
        raise LeapsError(f"manifest {path} holds no job")
    return jobs


def write_manifest(path: str | Path, jobs: Sequence[Job]) -> None:
    """Write ``jobs`` as CSV or JSON Lines (by the suffix of ``path``)."""
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps(job.to_record()) + "\n" for job in jobs))
        return
    if path.suffix.lower() != ".csv":
        raise LeapsError(f"{path}: a manifest is a .csv or .jsonl file")
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for job in jobs:
            record = job.to_record()
            record["stimulus"] = STIMULUS_SEPARATOR.join(record.get("stimulus", []))
            if "size" in record:
                record["size"] = "x".join(map(str, record["size"]))
            writer.writerow(record)


def plan_jobs(
    stimuli_root: str | Path, models: Sequence[str], seeds: Sequence[int], labels_csv: str | Path | None = None,
    settings: dict | None = None,
) -> list[Job]:
    """One job per stimulus x model x seed.

    The class of a stimulus is the name of the sub-folder that holds it (``ROOT/<class>/<video>``), or its
    entry in ``labels_csv`` (columns ``path,class``; paths relative to that file). A stimulus is a video or
    tensor file, or a folder of frames.
    """
    root = Path(stimuli_root)
    if not root.is_dir():
        raise LeapsError(f"stimulus folder not found: {root}")
    pairs = _labelled_stimuli(root) if labels_csv is None else _labels_from_csv(Path(labels_csv))
    if not pairs:
        raise LeapsError(f"no stimulus found under {root} (expected ROOT/<class>/<video, tensor or frame folder>)")
    settings = settings or {}
    return [Job(label=label, model=model, stimulus=(str(stimulus),), seed=seed, **settings)
            for model in models for seed in seeds for stimulus, label in pairs]


def _labelled_stimuli(root: Path) -> list[tuple[Path, str]]:
    from leaps_engine.engine.stimulus import IMAGE_EXTENSIONS, TENSOR_EXTENSIONS, VIDEO_EXTENSIONS

    clip_suffixes = VIDEO_EXTENSIONS + TENSOR_EXTENSIONS
    pairs = []
    for class_dir in (p for p in visible_entries(root) if p.is_dir()):
        for entry in visible_entries(class_dir):
            is_frames = entry.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in visible_entries(entry))
            if is_frames or (entry.is_file() and entry.suffix.lower() in clip_suffixes):
                pairs.append((entry.resolve(), class_dir.name))
    return pairs


def _labels_from_csv(path: Path) -> list[tuple[Path, str]]:
    rows = list(csv.DictReader(read_text(path, "labels file").splitlines()))
    if not rows or not {"path", "class"} <= set(rows[0]):
        raise LeapsError(f"labels file {path} needs the columns path and class")
    return [((path.parent / row["path"]).resolve(), row["class"]) for row in rows]


def _csv_rows(text: str, path: Path) -> Iterable[tuple[int, dict]]:
    reader = csv.DictReader(text.splitlines())
    unknown = set(reader.fieldnames or ()) - set(COLUMNS)
    if unknown:
        raise LeapsError(f"unknown manifest column(s) {', '.join(sorted(unknown))}; known: {', '.join(COLUMNS)}")
    for line, row in enumerate(reader, start=2):
        if None in row:  # DictReader's key for cells beyond the header
            raise LeapsError(f"{path}:{line}: more cells than the header has columns")
        yield line, {key: value for key, value in row.items() if value not in (None, "")}


def _jsonl_rows(text: str, path: Path) -> Iterable[tuple[int, dict]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as error:
            raise LeapsError(f"{path}:{line}: not JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise LeapsError(f"{path}:{line}: each line must be a JSON object")
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise LeapsError(f"{path}:{line}: unknown key(s) {', '.join(sorted(unknown))}")
        yield line, {key: value for key, value in row.items() if value not in (None, "")}


def _job_from_row(row: dict, path: Path, line: int) -> Job:
    where = f"{path}:{line}"
    if "class" not in row:
        raise LeapsError(f"{where}: the job has no class")
    fields: dict = {"label": str(row.pop("class"))}
    for name, value in row.items():
        try:
            fields[name] = _parse_value(name, value, path.parent)
        except (TypeError, ValueError):
            raise LeapsError(f"{where}: bad {name} {value!r}") from None
    return Job(**fields)


def _parse_value(name: str, value: object, base: Path) -> object:
    if name == "stimulus":
        paths = value if isinstance(value, list) else str(value).split(STIMULUS_SEPARATOR)
        return tuple(str((base / str(p).strip()).resolve()) for p in paths if str(p).strip())
    kind = SETTING_TYPES.get(name, str)
    if kind is int:
        if isinstance(value, float) or not re.fullmatch(r"-?\d+", str(value)):
            raise ValueError(value)
        return int(value)
    if kind is float:
        return float(value)
    if kind is not str:  # the size, (T, H, W)
        parts = value if isinstance(value, list) else str(value).lower().split("x")
        size = tuple(int(part) for part in parts)
        if len(size) != 3:
            raise ValueError(value)
        return size
    return str(value)
