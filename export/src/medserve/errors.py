"""Errors of the model side, each with the exit status the CLI returns.

Exception tree::

    MedServeError                exit 1
    ├── UsageError               exit 2: bad input from the user (a file, a field, a flag)
    ├── VerificationError        exit 1: a written repository failed a check
    └── ServerError              exit 1: the local tritonserver failed to start or died

The statuses are the table every medserve command shares
(:class:`medserve_client.contract.ExitStatus`); errors of the client that a
command meets (a server that does not answer: 3) keep their own.
Messages name the file or field that was wrong and what to do; they never carry
pixel data or patient attributes.
"""

from medserve_client.contract import ExitStatus


class MedServeError(Exception):
    """Base class of every error the medserve CLI reports without a traceback."""

    exit_code: int = ExitStatus.FAILURE


class UsageError(MedServeError):
    """The user's input is wrong: a missing file, a bad model, a bad flag value."""

    exit_code = ExitStatus.USAGE


class VerificationError(MedServeError):
    """A model repository does not match what the exporter promises."""


class ServerError(MedServeError):
    """The local Triton server could not start, lost a model, or died."""
