"""The error types the commands turn into a one-line message and exit code 2."""

from __future__ import annotations

import os


class UserError(Exception):
    """Bad input (config, data, workdir, checkpoint): the message names the problem and the fix."""


class DestinationError(UserError):
    """A destination (`role`: a workdir, an export folder, a file) that cannot be written. The
    library names the role; a command names its flag instead (`named`)."""

    def __init__(self, role: str, path: str | os.PathLike, problem: str):
        self.role, self.path, self.problem = role, os.fspath(path), problem
        super().__init__(self.named(role))

    def named(self, name: str) -> str:
        """The message with the destination called `name` (a command's flag, such as --out)."""
        return f"{name} {self.path} {self.problem}: choose another {name}"
