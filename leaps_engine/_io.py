"""File-system helpers every layer shares: reading the user's text files, listing the user's folders.

* :func:`read_text` reads UTF-8 with or without a byte-order mark (spreadsheets save "CSV UTF-8" with
  one; a BOM left in would glue itself to the first column's name).
* :func:`visible_entries` lists a folder without what operating systems leave in it: hidden files
  (``.DS_Store``, macOS's AppleDouble companions ``._clip.mp4``), ``Thumbs.db``, ``desktop.ini`` and
  ``__MACOSX`` folders. Every place that expands a folder the user names goes through it.
"""

from __future__ import annotations

from pathlib import Path

from leaps_engine.errors import LeapsError

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
