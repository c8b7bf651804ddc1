"""Exit codes and the one-line failure every client command ends with on error."""

from __future__ import annotations

import os
from typing import IO, Any

import click

EXIT_OK = 0
EXIT_SERVER_ERROR = 1  # the server answered with an error (or something unexpected broke)
EXIT_USAGE = 2  # what click uses for its own usage errors too
EXIT_UNREACHABLE = 3  # no server answered at --server


class CommandFailed(click.ClickException):
    """A failure shown as ONE line on stderr; the server said no (exit 1).

    click catches it in standalone mode, calls :meth:`show` and exits with
    ``exit_code``: no traceback, no usage text.
    """

    exit_code = EXIT_SERVER_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        one_line = " ".join(self.format_message().split())
        click.echo(f"error: {one_line}", err=True, file=file)


class UsageFailed(CommandFailed):
    """The command line cannot work as given, e.g. no admin key (exit 2)."""

    exit_code = EXIT_USAGE


class ServerUnreachable(CommandFailed):
    """Nothing answered at --server (exit 3)."""

    exit_code = EXIT_UNREACHABLE


def usage_failure(message: str) -> UsageFailed:
    return UsageFailed(message)


def _invoke_safely(invoke: Any, ctx: click.Context) -> Any:
    # gRPC core logs its own errors (a bad CA file, an unresolvable target) as
    # several lines on stderr; the client commands say what went wrong in one.
    # Set before grpc is first imported (the callbacks import it); a value the
    # user chose, e.g. GRPC_VERBOSITY=DEBUG for a bug report, is kept.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    try:
        return invoke(ctx)
    except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
        raise
    except KeyboardInterrupt:
        raise click.Abort() from None
    except Exception as exc:  # the last net under "never a traceback"
        raise CommandFailed(
            f"unexpected {type(exc).__name__}: {exc}; this is a bug in m2mauth, please report it"
        ) from exc


class ClientGroup(click.Group):
    """A command group whose commands fail in one line, never with a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        return _invoke_safely(super().invoke, ctx)


class ClientCommand(click.Command):
    """A command that fails in one line, never with a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        return _invoke_safely(super().invoke, ctx)
