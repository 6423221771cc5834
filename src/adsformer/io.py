"""Atomic writes that never destroy what adsformer did not write.

Every command that writes results goes through :func:`atomic_dir` or :func:`atomic_file`: the content is
written under a temporary name beside the destination and renamed into place only when writing finished
without an exception. A failure leaves the destination exactly as it was (absent, or the previous
version) and removes the temporary files.

Ownership. Every directory :func:`atomic_dir` writes (and every parent it creates) holds a marker file,
:data:`MARKER`, listing the entries adsformer put there; :func:`atomic_file` adds the files it writes into
a marked directory to that list. An existing destination directory is replaced only when adsformer wrote
all of it (marked, and nothing in it beyond the listed entries); a non-empty directory it did not write, or
one holding files a user added, is refused with :class:`~adsformer.errors.OutputError` unless overwriting is
allowed (``--overwrite``: :func:`allow_overwrite`). Then the new entries are moved in, replacing those of the
same name and adsformer's own earlier entries, and every other file is kept: adsformer never removes a file
it did not create.

Killed runs. Temporary names carry a host tag and the writer's process id
(``.NAME.tmp-HOST-PID-XXXX``); every write first removes the temporary files and directories in the same
folder whose process on this host is gone (and those of older versions, by age).

Modes. Outputs follow the user's umask (temporary files are created private, then given the usual mode
before they are renamed into place), so a team or a service user can read runs and reports.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adsformer.errors import OutputError

#: The marker file in every directory adsformer wrote: JSON ``{"written_by", "version", "entries"}``
MARKER = ".adsformer.json"
#: Temporary names of older versions (no process id) are removed when older than this
LEGACY_TMP_AGE_S = 3600.0

_OVERWRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("adsformer_overwrite", default=False)


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


HOST = _host_tag()
_TMP = re.compile(r"\.(?P<name>.+)\.(?:tmp|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[A-Za-z0-9_]+")
_LEGACY_TMP = re.compile(r"\.(?P<name>.+)\.(?:tmp|old)-[A-Za-z0-9_]{8}")


@contextlib.contextmanager
def allow_overwrite(allowed: bool = True) -> Iterator[None]:
    """Within the block, writes may go into non-empty directories adsformer did not write (keeping every
    file they do not replace): what ``--overwrite`` turns on."""
    token = _OVERWRITE.set(allowed)
    try:
        yield
    finally:
        _OVERWRITE.reset(token)


def umask() -> int:
    """The process's umask (read without changing it where the platform allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_dir(dest: str | Path, *, overwrite: bool | None = None) -> None:
    """Raise :class:`OutputError` unless ``dest`` may be written as a directory: absent, empty, written
    entirely by adsformer, or ``overwrite`` (default: :func:`allow_overwrite`'s setting). Commands call it
    before long work, so a refusal comes first, not after training."""
    dest = Path(dest)
    allowed = _OVERWRITE.get() if overwrite is None else overwrite
    if dest.exists() and not dest.is_dir():
        raise OutputError(f"{dest}: exists and is not a directory; choose a directory path for the output")
    if allowed or not dest.exists():
        return
    foreign = foreign_entries(dest)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        owned = (dest / MARKER).is_file()
        what = (
            "holds files adsformer did not write"
            if owned
            else "is not empty and was not written by adsformer"
        )
        raise OutputError(
            f"{dest}: {what} ({shown}); choose another output directory, move them away, or pass "
            f"--overwrite (replaces same-named entries, keeps every other file)"
        )


def foreign_entries(directory: Path) -> list[str]:
    """Entries of ``directory`` adsformer did not write (none listed by its marker; every entry when it has
    no marker), leaving out temporary names and looking into marked subdirectories."""
    names = sorted(e.name for e in os.scandir(directory) if e.name != MARKER and not _is_temp_name(e.name))
    listed = read_marker(directory)
    if listed is None:
        return names
    out = []
    for name in names:
        if name not in listed:
            out.append(name)
        elif (directory / name).is_dir() and (directory / name / MARKER).is_file():
            out += [f"{name}/{inner}" for inner in foreign_entries(directory / name)]
    return out


def read_marker(directory: Path) -> set[str] | None:
    """The entries adsformer wrote into ``directory`` (None: not written by adsformer, or an unreadable
    marker)."""
    try:
        obj = json.loads((directory / MARKER).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(obj, dict) or obj.get("written_by") != "adsformer":
        return None
    entries = obj.get("entries", [])
    return {e for e in entries if isinstance(e, str)} if isinstance(entries, list) else None


def write_marker(directory: Path, entries: set[str] | list[str]) -> None:
    """(Re)write the marker of ``directory`` listing ``entries`` (atomically, with the umask's mode)."""
    from adsformer import __version__

    body = {"written_by": "adsformer", "version": __version__, "entries": sorted(set(entries))}
    fd, name = tempfile.mkstemp(prefix=f".{MARKER}.tmp-{HOST}-{os.getpid()}-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(body, indent=1) + "\n")
        os.chmod(name, 0o666 & ~umask())
        os.replace(name, directory / MARKER)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _register(parent: Path, name: str) -> None:
    """Add ``name`` to the marker of ``parent`` when adsformer wrote ``parent``."""
    listed = read_marker(parent)
    if listed is not None and name not in listed:
        write_marker(parent, listed | {name})


def _make_parents(directory: Path) -> None:
    """Create ``directory`` and its missing parents, each marked as adsformer's (listing the child)."""
    missing = []
    p = directory
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        write_marker(d, [])
        _register(d.parent, d.name)


def _is_temp_name(name: str) -> bool:
    return bool(_TMP.fullmatch(name) or _LEGACY_TMP.fullmatch(name) or name.startswith(f".{MARKER}.tmp-"))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:
        return False
    return True


def clean_stale_temps(parent: Path, name: str | None = None) -> list[str]:
    """Remove the temporary files and directories in ``parent`` left by killed writers on this host (their
    process is gone), and legacy ones (no process id) of ``name`` older than :data:`LEGACY_TMP_AGE_S`.
    Returns the names removed."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TMP.fullmatch(entry.name)
        if m is not None:
            stale = m["host"] == HOST and not _alive(int(m["pid"]))
        else:
            legacy = _LEGACY_TMP.fullmatch(entry.name)
            try:
                old = now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_TMP_AGE_S
            except OSError:
                continue
            stale = legacy is not None and name is not None and legacy["name"] == name and old
        if not stale:
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def _temp_prefix(dest: Path, kind: str) -> str:
    return f".{dest.name}.{kind}-{HOST}-{os.getpid()}-"


@contextlib.contextmanager
def atomic_dir(dest: str | Path, *, overwrite: bool | None = None) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``dest`` when the block exits cleanly.

    An existing ``dest`` is swapped out only after the new content is complete, and only when adsformer
    wrote all of it; otherwise :class:`OutputError` (before the block runs), or with ``overwrite`` (default:
    :func:`allow_overwrite`'s setting) the new entries are merged in and every other file is kept.
    """
    dest = Path(dest)
    allowed = _OVERWRITE.get() if overwrite is None else overwrite
    check_output_dir(dest, overwrite=allowed)
    _make_parents(dest.parent)
    clean_stale_temps(dest.parent, dest.name)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest, "tmp"), dir=dest.parent))
    os.chmod(tmp, 0o777 & ~umask())
    try:
        yield tmp
        entries = [e.name for e in os.scandir(tmp) if e.name != MARKER]
        write_marker(tmp, entries)
        check_output_dir(dest, overwrite=allowed)  # again: the destination may have changed meanwhile
        if dest.exists() and (allowed and foreign_entries(dest)):
            _merge_into(tmp, dest, entries)
        else:
            _swap(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _register(dest.parent, dest.name)


def _swap(tmp: Path, dest: Path) -> None:
    """``tmp`` becomes ``dest``; an existing ``dest`` (adsformer's, or empty) is moved aside, then removed."""
    old: Path | None = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest, "old"), dir=dest.parent))
        os.rmdir(old)
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _merge_into(tmp: Path, dest: Path, entries: list[str]) -> None:
    """``--overwrite`` into a directory holding files adsformer did not write: move the new entries in
    (replacing same-named ones), drop adsformer's earlier entries, keep everything else."""
    previous = read_marker(dest) or set()
    trash = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest, "old"), dir=dest.parent))
    try:
        for name in entries:
            if (dest / name).exists() or (dest / name).is_symlink():
                os.replace(dest / name, trash / name)
            os.replace(tmp / name, dest / name)
        for name in previous - set(entries):
            if (dest / name).exists() or (dest / name).is_symlink():
                os.replace(dest / name, trash / f"{name}.previous")
        write_marker(dest, entries)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def growing_dir(dest: str | Path) -> Path:
    """``dest`` as a directory that grows entry by entry over runs (a resumable study): refused as
    :func:`check_output_dir` refuses, created when absent (marked as adsformer's, with its missing parents),
    else kept as it is and marked. Each entry is then written atomically (:func:`atomic_file`,
    :func:`atomic_dir`) or, written in place by a program that keeps its own journal (a SQLite database),
    listed with :func:`claim`."""
    dest = Path(dest)
    check_output_dir(dest)
    if not dest.exists():
        _make_parents(dest)
    elif read_marker(dest) is None:
        write_marker(dest, [])  # empty, or --overwrite: the files already there stay the user's
    return dest


def claim(directory: str | Path, name: str) -> None:
    """List ``name`` in the marker of ``directory`` (adsformer's): an entry written in place."""
    _register(Path(directory), name)


@contextlib.contextmanager
def atomic_file(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that is renamed onto ``dest`` when the block exits cleanly (an existing
    file is replaced; a directory in the way is an :class:`OutputError`)."""
    dest = Path(dest)
    if dest.is_dir():
        raise OutputError(f"{dest}: is a directory; choose a file path for the output")
    dest.parent.mkdir(parents=True, exist_ok=True)  # plain folders: a file's parents are the user's
    clean_stale_temps(dest.parent, dest.name)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(dest, "tmp"), dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~umask())  # writers that recreate the file keep the umask's mode too
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _register(dest.parent, dest.name)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, Paths: the values our reports hold
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
