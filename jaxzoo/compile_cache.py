"""A persistent compilation cache for every jaxzoo command, on by default.

XLA programs are written to a per-user folder and read back by the next run that needs them
(a rerun, a resume, the next zoo of the same shapes, the other tasks of a job array), so a run
compiles only what no earlier run compiled. The quickstart zoo compiles 18 programs in ~15 s
on 2 cores; a second run reads them in under a second.

Where: `--compile_cache DIR` (train) or `JAXZOO_COMPILE_CACHE=DIR`, else
`$XDG_CACHE_HOME/jaxzoo/compile` (`~/.cache/jaxzoo/compile`); `off` turns it off. Inside it,
one folder per JAX/jaxlib version, platform and device kind (on CPU also the instruction-set
features, so nodes of another CPU kind sharing a home folder never load each other's code).
A run that set JAX's own `jax_compilation_cache_dir` (or `JAX_COMPILATION_CACHE_DIR`) keeps it.

Each folder is bounded (`JAXZOO_COMPILE_CACHE_GB`, default 4): JAX evicts the least recently
used programs past it. The bound also turns on JAX's file lock around every read and write,
which makes the folder safe for many processes at once (job arrays, `--distributed`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import platform
import re

import jax

from jaxzoo.errors import UserError

ENV = "JAXZOO_COMPILE_CACHE"
SIZE_ENV = "JAXZOO_COMPILE_CACHE_GB"
OFF = "off"
DEFAULT_SIZE_GB = 4.0
# JAX's events: one per compilation that may use the cache, one per program read from it.
REQUEST_EVENT = "/jax/compilation_cache/compile_requests_use_cache"
HIT_EVENT = "/jax/compilation_cache/cache_hits"


class CompileCacheError(UserError):
    """The cache folder or its size bound cannot be used as given."""


def default_root() -> pathlib.Path:
    """$XDG_CACHE_HOME/jaxzoo/compile, or ~/.cache/jaxzoo/compile."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "jaxzoo" / "compile"


def cpu_features() -> str:
    """The host CPU's instruction-set flags (Linux /proc/cpuinfo), else its machine name."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    flags = re.search(r"^(?:flags|Features)\s*:(.*)$", text, re.MULTILINE)
    return " ".join(sorted(flags.group(1).split())) if flags else platform.machine()


def folder_name() -> str:
    """The versions and devices a cached program is valid for, as one folder name."""
    device = jax.devices()[0]
    parts = [f"jax{jax.__version__}", f"jaxlib{jax.lib.__version__}", device.platform, device.device_kind]
    if device.platform == "cpu":
        parts.append(hashlib.sha256(cpu_features().encode()).hexdigest()[:12])
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))


def size_bound_bytes() -> int:
    """JAXZOO_COMPILE_CACHE_GB in bytes (default 4 GiB)."""
    text = os.environ.get(SIZE_ENV, "")
    try:
        gigabytes = float(text) if text else DEFAULT_SIZE_GB
    except ValueError:
        gigabytes = -1.0
    if not 0 < gigabytes < float("inf"):
        raise CompileCacheError(f"{SIZE_ENV}={text!r} is not a size: give the cache's bound in GiB (e.g. 4)")
    return int(gigabytes * (1 << 30))


def writable(path: pathlib.Path) -> bool:
    """Whether `path` is, or could be created as, a folder this process may write (nothing is created)."""
    for parent in (path, *path.parents):
        if parent.exists():
            return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    return False


def enable(setting: str | None = None) -> pathlib.Path | None:
    """Turns the cache on for this process (call before its first compilation) -> its folder,
    or None when off. `setting`: a folder, 'off', or None (JAXZOO_COMPILE_CACHE, else the
    default). A folder that cannot be written raises CompileCacheError when it was asked for;
    the default then leaves the cache off."""
    chosen = jax.config.jax_compilation_cache_dir
    if chosen:  # the user's own JAX setting
        return pathlib.Path(chosen)
    setting = setting if setting is not None else os.environ.get(ENV, "")
    if setting.strip().lower() == OFF:
        return None
    root = pathlib.Path(setting).expanduser() if setting else default_root()
    bound = size_bound_bytes()
    if not writable(root):
        if setting:
            raise CompileCacheError(
                f"compile cache {root} cannot be written: give a writable folder, or 'off' (--compile_cache or {ENV})"
            )
        return None
    folder = root / folder_name()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_compilation_cache_max_size", bound)
    # Every program, however fast to compile: a resumed run should compile nothing.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return folder


@dataclasses.dataclass
class CompileCount:
    """Compilations that asked the persistent cache, and how many it answered, while counting.

    with CompileCount() as count: ...compile...; count.requests, count.hits
    """

    requests: int = 0
    hits: int = 0
    active: bool = False

    def __enter__(self) -> CompileCount:
        self.active = True
        _COUNTERS.append(self)
        return self

    def __exit__(self, *exc) -> None:
        self.active = False
        _COUNTERS.remove(self)

    def describe(self) -> str:
        """'(12 of 18 from the compile cache)', or '' when the cache is off or was not asked."""
        if not self.requests or not jax.config.jax_compilation_cache_dir:
            return ""
        return f" ({self.hits} of {self.requests} from the compile cache)"


_COUNTERS: list[CompileCount] = []


def _on_event(event: str, **kwargs) -> None:
    for counter in _COUNTERS:
        if event == REQUEST_EVENT:
            counter.requests += 1
        elif event == HIT_EVENT:
            counter.hits += 1


jax.monitoring.register_event_listener(_on_event)
