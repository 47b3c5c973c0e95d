"""Telling local paths from hub ids, and where xlembed keeps its caches.

A string that names an existing folder, starts like a path (``/``, ``./``, ``../``, ``~``), or looks
like a Windows path (``C:\\...``, ``D:/...``, ``\\\\server\\share``) is always a local path, never a
hub id.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import BadInputError

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_WINDOWS_UNC = re.compile(r"^(\\\\|//)[^\\/]+[\\/][^\\/]+")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def is_windows_style(spec: str) -> bool:
    """True for ``C:\\x``, ``C:/x``, ``\\\\server\\share\\x`` and any string with a backslash."""
    return bool(_WINDOWS_DRIVE.match(spec) or _WINDOWS_UNC.match(spec) or "\\" in spec)


def looks_like_path(spec: str) -> bool:
    """A string the user meant as a path even if it does not exist (never a hub id)."""
    return (
        spec.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or spec in (".", "..")
        or is_windows_style(spec)
    )


def is_hub_id(spec: str) -> bool:
    """``org/name`` or ``name`` made of the characters the Hugging Face hub allows."""
    return bool(_HUB_ID.match(spec)) and ".." not in spec


def local_path(spec: str) -> Path:
    """The local path for a string the user meant as a path; a Windows path on POSIX is an error that says what to write."""
    if is_windows_style(spec) and os.name != "nt":
        posix = spec.replace("\\", "/")
        drive = _WINDOWS_DRIVE.match(spec)
        hint = f"/mnt/{spec[0].lower()}{posix[2:]}" if drive else posix
        raise BadInputError(
            f"{spec!r} is a Windows path, but this system ({sys.platform}) uses POSIX paths; "
            f"write it as a POSIX path to the same folder (for a drive mounted under /mnt, e.g. {hint!r})"
        )
    return Path(spec).expanduser()


def cache_dir() -> Path:
    """xlembed's cache folder: $XLEMBED_CACHE, else $XDG_CACHE_HOME/xlembed, else ~/.cache/xlembed."""
    env = os.environ.get("XLEMBED_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xlembed"


def model_dirs() -> list[Path]:
    """Folders searched for a catalogue model by name: $XLEMBED_MODELS (os.pathsep-separated), then cache_dir()/models."""
    dirs = [Path(p).expanduser() for p in os.environ.get("XLEMBED_MODELS", "").split(os.pathsep) if p]
    return dirs + [cache_dir() / "models"]


@contextlib.contextmanager
def atomic_folder(out_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to write into; on success it is renamed to ``out_dir``.

    On failure the temporary folder is removed and ``out_dir`` is left as it was.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"{out_dir} exists and is a file; choose a folder path for the output")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise BadInputError(f"{out_dir} exists and is not empty; choose another folder or pass overwrite=True (CLI: --overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; the finished folder follows the umask
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
