"""Safe output folders: what a command may replace, and how it writes.

Every command that takes `--out` follows the same rules, so no command can destroy user data:

- A folder that does not exist, or an empty one, is simply used.
- An existing folder is replaced (or added to) only if it carries the command's **marker**, a
  file that only that command writes (`sr.json`, `results.json`, `card.json`, ...): it is then an
  earlier output of the same command. Anything else is refused with one line.
- The current folder, any folder above it, the filesystem root, the home folder, an input and any
  folder above an input are never replaced, marker or not.
- Writability is checked *before* the work starts, so a long computation never ends in
  "permission denied".
- A replaced folder is written in full to a temporary sibling first and swapped in at the end
  ([`atomic_dir`][mrsisr.outputs.atomic_dir]): a failure or an interruption leaves the previous
  output as it was and nothing half-written.

Examples:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> out = prepare_out(root / "sr", marker="sr.json")
    >>> with atomic_dir(out) as tmp:
    ...     _ = (tmp / "sr.json").write_text("{}")
    >>> sorted(p.name for p in out.iterdir())
    ['sr.json']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from mrsisr.errors import MrsisrError

__all__ = ["atomic_dir", "check_writable", "prepare_out", "protected_paths"]


def protected_paths(inputs: Iterable[str | os.PathLike[str]] = ()) -> set[Path]:
    """Folders no command may replace: the root, home, the current folder and the inputs, with
    every folder above them.

    Args:
        inputs: Input files or folders of the command.

    Returns:
        Resolved paths.
    """
    out = {Path("/").resolve(), Path.home().resolve()}
    for p in [Path.cwd(), *map(Path, inputs)]:
        p = p.resolve()
        out.add(p)
        out.update(p.parents)
    return out


def check_writable(path: str | os.PathLike[str], flag: str = "--out") -> None:
    """Check that `path` (a folder, existing or not) can be created and written into.

    The nearest existing folder at or above `path` must accept a new file; a test file is created
    and removed there.

    Args:
        path: The folder that will be written.
        flag: How messages name the option.

    Raises:
        MrsisrError: If `path` or a folder above it is a file, or nothing can be written there.
    """
    p = Path(path).absolute()
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise MrsisrError(f"{flag} {path}: {probe} is a file, not a folder; choose another path")
    try:
        fd, name = tempfile.mkstemp(prefix=".mrsisr-write-test-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise MrsisrError(
            f"{flag} {path}: cannot write in {probe} ({exc.strerror or exc}); choose a writable folder"
        ) from None


def prepare_out(
    out: str | os.PathLike[str],
    *,
    marker: str,
    overwrite: bool = True,
    inputs: Iterable[str | os.PathLike[str]] = (),
    flag: str = "--out",
    command: str = "this command",
) -> Path:
    """Decide whether a command may write its output folder, before any work is done.

    Args:
        out: The output folder.
        marker: File name that only this command writes; an existing non-empty folder must hold
            it to be replaced.
        overwrite: Whether an earlier output of this command may be replaced. `False` refuses
            any existing non-empty folder (the `sr` default; pass `--overwrite`).
        inputs: The command's inputs; they and the folders above them are never replaced.
        flag: How messages name the option.
        command: How messages name the command (e.g. `mrsisr sr`).

    Returns:
        `out` as an absolute path.

    Raises:
        MrsisrError: With one line naming `out` and what to do, if the folder may not be used.
    """
    path = Path(out).absolute()
    if path.exists() and not path.is_dir():
        raise MrsisrError(f"{flag} {out}: is a file, not a folder; choose a folder path")
    if path.is_dir() and any(path.iterdir()):
        resolved = path.resolve()
        if resolved in protected_paths(inputs):
            raise MrsisrError(
                f"{flag} {out}: refusing to write into the current folder, an input, or a folder "
                "above them; choose a new folder"
            )
        if not (path / marker).is_file():
            raise MrsisrError(
                f"{flag} {out}: exists and is not an earlier output of {command} (no {marker}); "
                "choose a new or empty folder"
            )
        if not overwrite:
            raise MrsisrError(
                f"{flag} {out}: already exists; choose a new folder or pass --overwrite"
            )
    check_writable(path.parent if path.is_dir() else path, flag)
    return path


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a whole folder under a temporary sibling name, then swap it in.

    On success the previous `out` (if any) is moved aside, the new folder renamed to `out`, and
    the old one deleted; on any failure the temporary folder is removed and `out` is untouched.
    Call [`prepare_out`][mrsisr.outputs.prepare_out] first: this function replaces whatever is
    at `out`.

    Args:
        out: The final folder.

    Yields:
        The temporary folder to write into.
    """
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        yield tmp
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "x")
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:  # put the previous output back
                os.replace(old / "x", out)
                shutil.rmtree(old, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
