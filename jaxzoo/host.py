"""What the host offers this process (CPU cores, free memory) on Linux, macOS and Windows."""

from __future__ import annotations

import ctypes
import os
import sys

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
