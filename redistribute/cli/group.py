"""The command group: a default ``run`` command, ``-h``/``--version``, and one-line errors for malformed command lines.

``redistribute MODEL ...`` is ``redistribute run MODEL ...``; a malformed command line (unknown option, bad value,
missing argument) prints the same one red ``error:`` line as every other failure, with a hint that names the command
the user typed (``redistribute --help`` for the main job, ``redistribute compare --help`` for a subcommand).
"""

from __future__ import annotations

from typing import Any

import click
import typer
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from .render import err_console, one_line
from .startup import LIGHT_COMMANDS, preload

__all__ = ["CONTEXT", "DefaultCommand", "DefaultGroup"]

#: ``-h`` works wherever ``--help`` does.
CONTEXT = {"help_option_names": ["-h", "--help"]}

#: typer's (vendored) click errors: bad option values, missing arguments, unknown options.
_CLICK_ERRORS: tuple[type[Exception], ...] = tuple(
    {c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"} | {click.ClickException}
)

_TOP_LEVEL = ("--help", "-h", "--version")


def _error_line(exc: Exception, hint: str) -> typer.Exit:
    """Print ``exc`` as one red line with ``hint`` and return the :class:`typer.Exit` to raise."""
    message = one_line(exc.format_message())  # type: ignore[attr-defined]  # a click exception
    err_console.print(Text.assemble(("error: ", "red"), f"{message}. Hint: see '{hint} --help'"), soft_wrap=True)
    return typer.Exit(getattr(exc, "exit_code", 2))


class _UnnamedContext(typer.Context):
    """The context of the default command when the user did not type its name: its usage reads
    ``redistribute [OPTIONS] MODEL``, not ``redistribute run ...``."""

    @property
    def command_path(self) -> str:
        return super().command_path.rstrip()


class DefaultCommand(TyperCommand):
    """The default command (``run``): named in usage and hints only when the user typed its name."""

    context_class = _UnnamedContext


class DefaultGroup(TyperGroup):
    """A group whose first argument, when it is not a subcommand, is the MODEL of the default ``run`` command."""

    default_command = "run"

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        return ("" if ctx.meta.get("redistribute.default") else name), cmd, rest

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in _TOP_LEVEL:
            args = [self.default_command, *args]
            ctx.meta["redistribute.default"] = True
        try:
            return super().parse_args(ctx, args)
        except _CLICK_ERRORS as exc:
            raise _error_line(exc, ctx.find_root().info_name or "redistribute") from None

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # typer passes its own Context
        """Run the subcommand; a malformed command line (bad option value, missing argument) is one red line.

        A subcommand that needs torch gets its heavy imports first, without full collections (:mod:`.startup`)."""
        args = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        if args and args[0] not in LIGHT_COMMANDS:
            preload(args[1:])
        try:
            return super().invoke(ctx)
        except _CLICK_ERRORS as exc:
            prog = ctx.find_root().info_name or "redistribute"
            sub = ctx.invoked_subcommand
            raise _error_line(exc, f"{prog} {sub}" if sub else prog) from None
