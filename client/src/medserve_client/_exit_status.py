"""Exit statuses of every medserve command, and the one rule that picks them.

Usage::

    from medserve_client.contract import ExitStatus, run_command

    def main(argv=None) -> int:
        args = build_parser().parse_args(argv)   # argparse: bad flags exit 2 (USAGE)
        return run_command(lambda: run(args), prog="medserve-client")

The table is shared by ``medserve`` (every subcommand), ``medserve-client``,
the demo and ``loadtest/run``, so a script can tell "fix your input" (2) from
"the server is not there, try again later" (3) whichever command it called.
Each error class of both exception trees (:mod:`medserve_client.exceptions`,
``medserve.errors``) carries its status as ``exit_code``; :func:`run_command`
is the one boundary that turns an error into one line on stderr and that
status, never a traceback.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from typing import TextIO


class ExitStatus(enum.IntEnum):
    """What a medserve command's exit status means."""

    OK = 0
    #: Anything else that failed: a failed check, a server error, a missed threshold.
    FAILURE = 1
    #: The user's input is wrong: a flag, a file, a field; fix it and run again.
    USAGE = 2
    #: No server answers (down, unreachable, not ready yet): try again later.
    UNAVAILABLE = 3
    #: The server answers, but the model (or that version) is unknown or not ready.
    MODEL_NOT_READY = 4
    #: The call's deadline passed.
    TIMEOUT = 5
    #: The server's queue policy rejected the request: slow down.
    OVERLOADED = 6
    #: The TLS handshake failed (CA, certificate, host name).
    TLS = 7
    #: An admin API needs the admin key (or a proxy refused).
    PERMISSION_DENIED = 8
    #: Ctrl-C (128 + SIGINT, as a shell reports it).
    INTERRUPTED = 130


def exit_status_of(exc: BaseException) -> int:
    """The exit status of an error: its class's ``exit_code``, else FAILURE."""
    status = getattr(exc, "exit_code", ExitStatus.FAILURE)
    return int(status) if isinstance(status, int) else int(ExitStatus.FAILURE)


def run_command(
    command: Callable[[], int],
    *,
    prog: str,
    errors: tuple[type[BaseException], ...] = (),
    stderr: TextIO | None = None,
) -> int:
    """Run ``command``; an expected error becomes one line on stderr and its exit status.

    Args:
        command: The command's body; returns its own status on success.
        prog: Names the command in the error line (``"medserve export"``).
        errors: The error classes reported this way besides the client's
            (``medserve_client.exceptions.MedServeError`` always is); anything
            else is a bug and keeps its traceback.
        stderr: Where the line goes (default ``sys.stderr``).
    """
    # Imported here: _errors takes its statuses from this module.
    from medserve_client._errors import MedServeError as ClientError

    err = stderr or sys.stderr
    caught: tuple[type[BaseException], ...] = (ClientError, *errors)
    try:
        return int(command())
    except caught as exc:
        print(f"{prog}: error: {exc}", file=err)
        return exit_status_of(exc)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err)
        return int(ExitStatus.INTERRUPTED)
