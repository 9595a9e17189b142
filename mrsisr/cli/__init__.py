"""The `mrsisr` command line.

Every subcommand turns a user error ([`MrsisrError`][mrsisr.errors.MrsisrError]) into one line on
standard error and exit code 2, with no traceback.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import typer
from typer.core import TyperGroup

from mrsisr.errors import MrsisrError


def print_error(message: object) -> None:
    """Print a user-facing error as a single line on standard error.

    Args:
        message: The error or message to print.
    """
    text = " ".join(str(message).split())
    print(f"error: {text}", file=sys.stderr, flush=True)


class _Group(TyperGroup):
    """Typer group that reports mrsisr's user errors as one line and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MrsisrError as exc:
            print_error(exc)
            raise typer.Exit(2) from None
        except OSError as exc:  # a full disk, a permission denied, a vanished file
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            print_error(
                f"{where}{exc.strerror or exc}; nothing was half-written, fix it and run again"
            )
            raise typer.Exit(2) from None


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
    from mrsisr.registry import PluginWarning

    if issubclass(category, PluginWarning):
        print(f"warning: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning

app = typer.Typer(
    cls=_Group,
    name="mrsisr",
    help="Super-resolution of MR spectroscopic imaging with deep generative models.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"mrsisr {version('mrsisr')}")
        except PackageNotFoundError:  # a source tree that was not installed
            typer.echo("mrsisr (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Super-resolution of MR spectroscopic imaging with deep generative models."""
    warnings.showwarning = _show_warning


def _register_commands() -> None:
    from mrsisr.cli import bench, data, sr, train, zoo

    zoo.register(app)
    train.register(app)
    bench.register(app)
    sr.register(app)
    app.add_typer(data.app, name="data")


_register_commands()


def main() -> None:
    """Console-script entry point (`mrsisr`)."""
    app(prog_name="mrsisr")


__all__ = ["app", "main", "print_error"]
