"""The one error type the CLIs turn into a one-line message and exit code 2."""


class UserError(Exception):
    """Bad input (config, data, workdir, checkpoint): the message names the problem and the fix."""
