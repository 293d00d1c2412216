"""What the host offers this process (CPU cores, free memory, writable destinations) on Linux,
macOS and Windows."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Iterator

from jaxzoo.errors import DestinationError, UserError

FALLBACK_MEMORY_BYTES = 4 << 30  # where the platform reports no memory figure


def usable_cpu_count() -> int:
    """The CPU cores this process may run on: its affinity where the OS has one, else every core; >= 1."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return max(1, len(os.sched_getaffinity(0)))
    count = getattr(os, "process_cpu_count", os.cpu_count)()  # process_cpu_count: Python 3.13+
    return max(1, count or 1)


class _MemoryStatus(ctypes.Structure):
    """Windows' MEMORYSTATUSEX (64 bytes)."""

    _fields_ = [
        ("length", ctypes.c_uint32),
        ("memory_load", ctypes.c_uint32),
        ("total_phys", ctypes.c_uint64),
        ("avail_phys", ctypes.c_uint64),
        ("total_page_file", ctypes.c_uint64),
        ("avail_page_file", ctypes.c_uint64),
        ("total_virtual", ctypes.c_uint64),
        ("avail_virtual", ctypes.c_uint64),
        ("avail_extended_virtual", ctypes.c_uint64),
    ]


def _windows_available_bytes() -> int:
    status = _MemoryStatus(length=ctypes.sizeof(_MemoryStatus))
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return 0
    return status.avail_phys


def available_memory_bytes() -> int:
    """Host memory this process can use: the available pages on Linux, the physical memory where only
    that is reported (macOS), GlobalMemoryStatusEx's available bytes on Windows; else 4 GiB."""
    if sys.platform == "win32":
        return _windows_available_bytes() or FALLBACK_MEMORY_BYTES
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            size = os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # no sysconf, or not this name here
            continue
        if size > 0:
            return size
    return FALLBACK_MEMORY_BYTES


def destination_problem(path: pathlib.Path, is_file: bool = False) -> str | None:
    """Why `path` (a folder, or a file with `is_file`) cannot be created or written, or None.

    Tries a temporary file in the nearest existing folder, so a read-only file system or
    immutable folder is caught for root too; missing folders are left for the command to create.
    """
    path = pathlib.Path(path).absolute()
    if is_file and path.is_dir():
        return "is a folder, not a file"
    if not is_file and path.exists() and not path.is_dir():
        return "is a file, not a folder"
    folder = path.parent if is_file else path
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"is not writable: {existing} is a file, not a folder"
    if is_file and existing != folder:
        return f"cannot be written: its folder {folder} does not exist"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"is not writable ({error.strerror} in {existing})"
    return None


def check_destination(path: str | os.PathLike, role: str, is_file: bool = False) -> None:
    """Before any work: raises DestinationError naming `role` (a workdir, an export folder, a
    file) unless `path` can be created or written."""
    problem = destination_problem(pathlib.Path(path), is_file)
    if problem:
        raise DestinationError(role, pathlib.Path(path).absolute(), problem)


class DiskSpaceError(UserError):
    """Too little free space for what a command is about to write (nothing was written yet)."""


def free_bytes(path: str | os.PathLike) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    path = pathlib.Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(existing).free


def check_free_space(path: str | os.PathLike, needed: int, what: str) -> None:
    """Raises DiskSpaceError, before anything is written, when the file system of `path` has
    fewer than `needed` bytes free for `what` (e.g. "the checkpoint of epoch 3")."""
    free = free_bytes(path)
    if free < needed:
        raise DiskSpaceError(
            f"{what} needs {needed:,} bytes in {pathlib.Path(path).absolute()} and {free:,} are free: "
            "free space or choose a folder on another disk"
        )


def remove(path: pathlib.Path) -> None:
    """Removes a file or a folder tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


def move_into_place(partial: pathlib.Path, target: pathlib.Path) -> None:
    """Puts the finished folder `partial` at `target`; an existing `target` is replaced (it goes
    only once the new one is complete: moved aside, then removed)."""
    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if target.exists():
        old = target.parent / f".{target.name}.old"
        remove(old)
        os.replace(target, old)
        os.replace(partial, target)
        remove(old)
    else:
        os.replace(partial, target)


@contextlib.contextmanager
def folder_in_place(target: pathlib.Path) -> Iterator[pathlib.Path]:
    """Yields a new folder beside `target` to write into; when the block ends it replaces `target`
    (`move_into_place`). If the block fails, for any reason, the new folder is removed and `target`
    is as it was: a reader never sees half of it."""
    target = pathlib.Path(target)
    partial = target.parent / f".{target.name}.partial"
    remove(partial)
    partial.mkdir(parents=True)
    try:
        yield partial
        move_into_place(partial, target)
    except BaseException:
        remove(partial)
        raise


@contextlib.contextmanager
def removed_on_failure(*paths: pathlib.Path) -> Iterator[None]:
    """Removes those of `paths` that do not exist yet if the block raises an error of any kind
    (what a command created is gone; what was there stays). An interrupt (Ctrl-C, SystemExit)
    keeps them, for a command that continues where it stopped."""
    new = [pathlib.Path(path) for path in paths if not os.path.lexists(path)]
    try:
        yield
    except Exception:
        for path in new:
            remove(path)
        raise
