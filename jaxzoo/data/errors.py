"""The data package's errors: one line naming the file or folder and the fix, never a traceback.

`damaged(path, detail, fix)` is the one message for a file that cannot be read as what it
should be; `reading(path, fix)` turns any error raised while a reader parses `path` (zlib,
gzip, pickle, scipy, PIL, zip, numpy, ...) into it. Readers name the published file the user
can replace: an archive rather than its member, the full path rather than a relative name.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator

from jaxzoo.errors import UserError

DOWNLOAD_AGAIN = "delete it and download it again"
DETAIL_CHARS = 200


class DataUnavailableError(UserError):
    """A dataset that no source on this machine can serve, or damaged data (message: the fix)."""


def one_line(text: str) -> str:
    """`text` on one line (library messages may hold newlines), at most DETAIL_CHARS long."""
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 3] + "..."


def describe(error: BaseException) -> str:
    """'zlib.error: Error -3 ...', 'EOFError', 'KeyError: 'data'' on one line."""
    kind = type(error)
    name = f"{kind.__module__}.error" if kind.__qualname__ == "error" else kind.__qualname__
    message = one_line(str(error))
    return f"{name}: {message}" if message else name


def damaged(path, detail: str, fix: str = DOWNLOAD_AGAIN, what: str = "") -> DataUnavailableError:
    """'file X is damaged ([what: ]detail): fix' — the one message for an unreadable data file;
    `what` names the part of it, e.g. 'member x/y' of an archive."""
    prefix = f"{what}: " if what else ""
    return DataUnavailableError(f"file {path} is damaged ({prefix}{one_line(detail)}): {fix}")


def exists(path: pathlib.Path) -> bool:
    """path.exists(), with a folder this user may not look into as a one-line error, not a traceback."""
    try:
        return path.exists()
    except PermissionError:
        closed = next((p for p in reversed(path.parents) if not os.access(p, os.X_OK)), path.parent)
        raise DataUnavailableError(
            f"cannot look into {closed} (Permission denied): give this user read and search permission on it"
        ) from None


@contextlib.contextmanager
def reading(path, fix: str = DOWNLOAD_AGAIN, what: str = "") -> Iterator[None]:
    """Any error while reading `path` -> `damaged(path, ..., fix, what)`; a missing permission
    or a folder where a file should be is said as such (the file is fine, the fix differs)."""
    try:
        yield
    except UserError:
        raise
    except PermissionError as error:
        raise DataUnavailableError(
            f"file {path} is not readable ({error.strerror}): give this user read permission on it"
        ) from None
    except IsADirectoryError:
        raise DataUnavailableError(f"{path} is a folder, not a file: put the published file there") from None
    except Exception as error:  # a damaged file makes parsers raise almost any type
        raise damaged(path, describe(error), fix, what) from None
