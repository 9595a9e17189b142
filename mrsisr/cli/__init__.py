"""The `mrsisr` command line.

Every subcommand turns a user error ([`MrsisrError`][mrsisr.errors.MrsisrError]) into one line on
standard error and exit code 2, with no traceback. The library's messages name its function
parameters in backticks (`` `batch` must be at least 1``); the command line shows its own flags
instead (`--batch must be at least 1`).
"""

from __future__ import annotations

import re
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


PARAMETER_FLAGS: dict[str, str] = {
    "batch_size": "--batch",
    "slice_index": "--preview-slice",
    "out_dir": "--out",
    "compile": "--compile",
}
"""Library parameter names whose command-line flag is not simply `--name-with-dashes`."""


def as_flags(message: str, options: set[str] | None = None) -> str:
    """Show the library's backticked parameter names as the command line's flags.

    Args:
        message: A library error message, e.g. `` `batch` must be at least 1``.
        options: The invoked command's option names (Python names); `None` maps every
            backticked lower-case name.

    Returns:
        The message with `` `name` `` replaced by `--name` where the command has that option.

    Examples:
        >>> as_flags("`batch_size` must be at least 1; `models`: x; `mrsisr train` y", {"models"})
        '--batch must be at least 1; --models: x; `mrsisr train` y'
    """

    def flag(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in PARAMETER_FLAGS:
            return PARAMETER_FLAGS[name]
        if options is None or name in options:
            return "--" + name.replace("_", "-")
        return m.group(0)

    return re.sub(r"`([a-z][a-z0-9_]*)`", flag, message)


def _options(group: TyperGroup, ctx: Any) -> set[str] | None:
    """The Python names of the invoked subcommand's options (`None` when unknown)."""
    pending = [*getattr(ctx, "_protected_args", []), *getattr(ctx, "protected_args", []), *ctx.args]
    name = next(iter(pending), None)
    cmd = group.get_command(ctx, name) if name else None
    if cmd is None or hasattr(cmd, "commands"):  # unknown, or a group such as `mrsisr data`
        return None
    return {p.name for p in cmd.params if getattr(p, "param_type_name", "") == "option" and p.name}


class _Group(TyperGroup):
    """Typer group that reports mrsisr's user errors as one line and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        options = _options(self, ctx)
        try:
            return super().invoke(ctx)
        except MrsisrError as exc:
            print_error(as_flags(str(exc), options))
            raise typer.Exit(2) from None
        except OSError as exc:  # a full disk, a permission denied, a vanished file
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            print_error(
                f"{where}{exc.strerror or exc}; nothing was half-written, fix it and run again"
            )
            raise typer.Exit(2) from None


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
    from mrsisr.registry import PluginWarning
    from mrsisr.runtime import PrecisionWarning

    if issubclass(category, (PluginWarning, PrecisionWarning)):
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


__all__ = ["PARAMETER_FLAGS", "app", "as_flags", "main", "print_error"]
