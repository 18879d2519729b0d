"""File-system helpers every layer shares: reading the user's files and writing results whole.

* :func:`read_text` reads UTF-8 with or without a byte-order mark (spreadsheets save "CSV UTF-8" with
  one; a BOM left in would glue itself to the first column's name).
* :func:`visible_entries` lists a folder without what operating systems leave in it: hidden files
  (``.DS_Store``, macOS's AppleDouble companions ``._clip.mp4``), ``Thumbs.db``, ``desktop.ini`` and
  ``__MACOSX`` folders. Every place that expands a folder the user names goes through it.
* Results appear whole or not at all: files through :func:`atomic_paths` (temporary names, renamed
  together), folders through :func:`staged_folder` (built hidden beside the target, renamed onto it),
  each publication with interruptions held (:func:`deferred_interrupts`); :func:`exclusive_output`
  refuses a second run on the same output, and :func:`signals_interrupt` makes SIGTERM and SIGHUP end a
  run like Ctrl-C, so its cleanup runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from leaps_engine.errors import LeapsError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

# Lower-cased names of files and folders that operating systems and archivers leave behind.
JUNK_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "icon\r"})


def read_text(path: str | Path, what: str) -> str:
    """The text of ``path``, UTF-8 with or without a byte-order mark.

    Raises:
        LeapsError: naming ``what`` (e.g. "manifest") when the file cannot be read or is not UTF-8.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise LeapsError(f"{what} {path} cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise LeapsError(f"{what} {path} is not UTF-8 text") from None


def is_junk(path: Path) -> bool:
    """Whether ``path`` is a hidden file or folder, or one operating systems leave behind."""
    return path.name.startswith(".") or path.name.lower() in JUNK_NAMES


def visible_entries(folder: Path) -> list[Path]:
    """The entries of ``folder`` that a person put there (see :func:`is_junk`), sorted by name."""
    return sorted(entry for entry in folder.iterdir() if not is_junk(entry))


# ---- writing: all of it or nothing ------------------------------------------------------------------------

INTERRUPT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
HOLD_PHASE_ENV = "LEAPS_ENGINE_HOLD_AT"  # tests only: see hold_point
HOLD_MARKER_ENV = "LEAPS_ENGINE_HOLD_MARKER"


class _Received:
    """How many interrupting signals this process's handlers have seen (what :func:`hold_point` waits for)."""

    count = 0


class Interrupted(KeyboardInterrupt):
    """The run was ended by a signal: Ctrl-C (SIGINT), SIGTERM (``kill``, ``timeout``, batch schedulers) or
    SIGHUP (a closed terminal). A ``KeyboardInterrupt``, so cleanup code treats all three alike."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _interrupt_signals_handled_by(handler: Callable[[int], None]) -> Iterator[None]:
    """For the block, Ctrl-C, SIGTERM and SIGHUP call ``handler(signum)`` (each counted for
    :func:`hold_point`); the previous handlers come back after it. Outside the main thread, where Python
    cannot install handlers: no change."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def counted(signum: int, frame: object) -> None:
        _Received.count += 1
        handler(signum)

    previous = {signum: signal.signal(signum, counted) for signum in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """For the block, SIGTERM and SIGHUP end the run like Ctrl-C: :class:`Interrupted` is raised in the
    main thread, so ``finally`` blocks remove what was half-written. Outside the main thread: no change."""

    def interrupt(signum: int) -> None:
        raise Interrupted(signum)

    with _interrupt_signals_handled_by(interrupt):
        yield


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP for the block (a few renames that must all happen), then deliver
    the first one that arrived, to the handler that was there before."""
    pending: list[int] = []
    try:
        with _interrupt_signals_handled_by(pending.append):
            yield
    finally:
        if pending:
            signal.raise_signal(pending[0])


def hold_point(phase: str) -> None:
    """A named point of writing results, where tests interrupt a run deterministically.

    When the environment sets ``LEAPS_ENGINE_HOLD_AT`` to ``phase``, the process writes its pid to the file
    ``LEAPS_ENGINE_HOLD_MARKER`` and waits until an interrupting signal arrives (which ends the run, or,
    inside :func:`deferred_interrupts`, is held until the block ends); otherwise nothing happens.
    """
    if os.environ.get(HOLD_PHASE_ENV) != phase:
        return
    seen = _Received.count
    Path(os.environ[HOLD_MARKER_ENV]).write_text(str(os.getpid()))
    while _Received.count == seen:  # a raising handler ends the wait; a deferring one counts the signal
        time.sleep(0.005)


@contextlib.contextmanager
def atomic_paths(*paths: str | Path) -> Iterator[list[Path]]:
    """Yield a temporary path next to each of ``paths`` (same extension); on success all of them are moved
    onto their paths together, interruptions held for those renames, so they appear as a set or not at all.

    Each temporary file is ``.<stem>.tmp-<random><suffix>``, created empty up front (which checks that the
    folder is writable) and deleted if the block raises or is interrupted. OS errors become :class:`LeapsError`.
    """
    targets = [Path(path) for path in paths]
    token = secrets.token_hex(4)
    temporaries = [path.with_name(f".{path.stem}.tmp-{token}{path.suffix}") for path in targets]
    try:
        for temporary, target in zip(temporaries, targets, strict=True):
            try:
                temporary.open("xb").close()
            except OSError as error:
                raise LeapsError(f"cannot write {target}: {error.strerror or error}") from None
        try:
            yield temporaries
        except OSError as error:  # a full disk, a lost mount, ...
            raise LeapsError(f"cannot write {', '.join(map(str, targets))}: {error.strerror or error}") from None
        for target in targets:
            hold_point(f"write {target.name}")
        with deferred_interrupts():
            for temporary, target in zip(temporaries, targets, strict=True):
                try:
                    os.replace(temporary, target)
                except OSError as error:
                    raise LeapsError(f"cannot write {target}: {error.strerror or error}") from None
    finally:
        for temporary in temporaries:
            with contextlib.suppress(OSError):  # e.g. its folder never existed
                temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """:func:`atomic_paths` for one file."""
    with atomic_paths(path) as (temporary,):
        yield temporary


@contextlib.contextmanager
def exclusive_output(target: Path) -> Iterator[None]:
    """Hold ``target`` (a result folder or file) for this process: a second run writing it is refused with
    a :class:`LeapsError` naming it. The lock is an advisory lock (``flock``) on ``.<name>.lock`` beside
    it; the lock file stays (removing it would let two runs lock two different files). Without ``fcntl``
    (Windows) there is no lock."""
    if fcntl is None:
        yield
        return
    lock_path = target.parent / f".{target.name}.lock"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")  # noqa: SIM115 - held open for the whole block
    except OSError as error:
        raise LeapsError(f"cannot write {target}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LeapsError(f"{target} is being written by another run; wait for it to finish or choose "
                             "another output") from None
        yield
    finally:
        handle.close()  # releases the lock


@contextlib.contextmanager
def staged_folder(target: Path, replaceable: Callable[[Path], bool]) -> Iterator[Path]:
    """Build a folder that replaces ``target`` whole: yields a hidden staging folder beside it; when the
    block succeeds, the staging folder is renamed onto ``target`` (a previous ``target`` is moved aside
    first and deleted after), interruptions held for those renames; when it fails or is interrupted,
    the staging folder is deleted and ``target`` is as it was.

    Call it inside :func:`exclusive_output` for ``target``; leftovers of earlier runs that were killed
    outright (SIGKILL, power loss) are removed first.

    Raises:
        LeapsError: ``target`` is a file, or a folder that ``replaceable`` refuses (it holds something
            else than an earlier result); the parent cannot be written.
    """
    if target.exists() and not (target.is_dir() and (not any(target.iterdir()) or replaceable(target))):
        raise LeapsError(f"{target} exists and is not an earlier result that may be replaced; choose another "
                         "output or remove it")
    for leftover in target.parent.glob(f".{target.name}.staging-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staging = target.parent / f".{target.name}.staging-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        staging.mkdir(parents=True)
    except OSError as error:
        raise LeapsError(f"cannot write {target}: {error.strerror or error}") from None
    try:
        yield staging
        with deferred_interrupts():
            hold_point(f"publish {target.name}")
            _replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _replace_folder(staging: Path, target: Path) -> None:
    previous = target.parent / f".{target.name}.replaced-{secrets.token_hex(3)}"
    try:
        if target.exists():
            os.rename(target, previous)
        os.rename(staging, target)
    except OSError as error:
        if previous.exists() and not target.exists():
            os.rename(previous, target)
        raise LeapsError(f"cannot write {target}: {error.strerror or error}") from None
    shutil.rmtree(previous, ignore_errors=True)
