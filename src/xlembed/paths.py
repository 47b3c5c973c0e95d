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


PARTIAL_SUFFIX = ".partial"
STALE_UNOWNED_SECONDS = 24 * 3600  # a .partial folder with no live owner recorded is stale after a day
_PARTIAL_OWNER = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]*)~(?P<pid>\d+)~[A-Za-z0-9_]+\.partial$")


@contextlib.contextmanager
def atomic_folder(out_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to write into; on success it is renamed to ``out_dir``.

    On failure the temporary folder is removed and ``out_dir`` is left as it was. Its name
    (``.NAME.HOST~PID~XXXX.partial``) records its owner, so the ``.partial`` folders that killed runs left
    beside ``out_dir`` are removed here when their process is gone (``stale_partials``); a running
    writer's folder is never touched. Files written inside get the usual umask-derived modes (some
    libraries write 0600 files).
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_partials(out_dir.parent, name=out_dir.name):
        shutil.rmtree(stale, ignore_errors=True)
    prefix = f".{out_dir.name}.{_host_tag()}~{os.getpid()}~"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=PARTIAL_SUFFIX, dir=out_dir.parent))
    try:
        yield tmp
        apply_umask_modes(tmp)
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


def stale_partials(folder: Path, name: str | None = None) -> list[Path]:
    """``.partial`` folders in ``folder`` (for output ``name``, or any) whose writer is gone.

    Stale: written on this host by a process that no longer runs, or with no owner recorded (older
    versions) and untouched for a day. A folder written by a live process, or on another host
    (a shared file system), is never stale here.
    """
    found = []
    for path in partial_folders(folder):
        owner = _PARTIAL_OWNER.match(path.name)
        if name is not None and not path.name.startswith(f".{name}."):
            continue
        if owner is not None and name is not None and owner["name"] != name:
            continue
        if partial_is_stale(path):
            found.append(path)
    return found


def partial_folders(folder: Path) -> list[Path]:
    """Every ``.*.partial`` folder directly in ``folder``."""
    try:
        return sorted(p for p in Path(folder).iterdir()
                      if p.name.startswith(".") and p.name.endswith(PARTIAL_SUFFIX) and p.is_dir())
    except OSError:
        return []


def partial_is_stale(path: Path) -> bool:
    """True when the process that writes the ``.partial`` folder ``path`` is gone (see ``stale_partials``)."""
    import time

    owner = _PARTIAL_OWNER.match(Path(path).name)
    if owner is None:
        try:
            return time.time() - Path(path).stat().st_mtime > STALE_UNOWNED_SECONDS
        except OSError:
            return False
    if owner["host"] != _host_tag():
        return False
    return not _pid_alive(int(owner["pid"]))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's process) or we cannot tell: keep its folder
    return True


def _host_tag() -> str:
    import socket

    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40]


def apply_umask_modes(root: Path) -> None:
    """Give ``root`` and everything under it the modes a new file or folder gets under the umask.

    Some writers (transformers' safetensors save, mkstemp, mkdtemp) make 0600/0700 files, which
    another user of a shared model folder could not read.
    """
    mask = current_umask()
    root = Path(root)
    os.chmod(root, 0o777 & ~mask)
    for base, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(base, d), 0o777 & ~mask)
        for f in files:
            path = os.path.join(base, f)
            if not os.path.islink(path):
                executable = os.stat(path).st_mode & 0o111
                os.chmod(path, (0o777 if executable else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_file(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; on success it gets the umask mode and is renamed
    to ``path``, on failure it is removed. ``suffix`` ends the temporary name (``.npy`` for ``np.save``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary name: readers never see a half-written file."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    """Write a UTF-8 text file through a temporary name (see ``write_bytes_atomic``)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def check_output_file(path: Path, what: str = "output file") -> Path:
    """Fail before any work when a result file cannot be written at ``path``: it is a folder, or its folder
    is not writable. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{what} {path} is an existing folder; give a file path (e.g. {path / 'out'}{path.suffix or ''})")
    if path.exists() and not os.access(path, os.W_OK):
        raise BadInputError(f"{what} {path} exists and is not writable; choose another path or change its permissions")
    _check_writable_parent(path, what)
    return path


def check_output_folder(path: Path, overwrite: bool = False, what: str = "output folder") -> Path:
    """Fail before any work when a result folder cannot be written at ``path``: it is a file, it is not empty
    (without ``overwrite``), or its parent is not writable. Creates nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInputError(f"{what} {path} exists and is a file; choose a folder path for the output")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise BadInputError(f"{what} {path} exists and is not empty; choose another folder or pass overwrite=True (CLI: --overwrite)")
    _check_writable_parent(path, what)
    return path


def _check_writable_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder this process may create entries in."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BadInputError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"cannot write {what} {path}: folder {parent} is not writable; choose another path")


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
