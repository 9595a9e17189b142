"""The run folder's guard: one training per folder, and the settings a resume must keep."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mrsisr.errors import CheckpointError, MrsisrError

RUN_FILE = "run.json"
"""The record of what a run folder belongs to."""
LOCK_FILE = ".lock"
"""The lock file of a running training."""

__all__ = ["RunLock", "checked_step", "claim_run_folder", "first_difference", "short"]


def first_difference(a: Any, b: Any, path: str) -> tuple[str, Any, Any]:
    """The dotted path and values of the first leaf where two JSON values differ.

    Args:
        a: One value.
        b: The other.
        path: The path of `a` and `b` so far.

    Returns:
        `(path, a_leaf, b_leaf)`.
    """
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{path}.{k}")
    return path, a, b


def short(value: Any) -> str:
    """A value as JSON, cut to 80 characters for messages.

    Args:
        value: The value.

    Returns:
        The text.
    """
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class RunLock:
    """An exclusive lock on a run folder, held for the whole training (released at exit).

    Args:
        path: The lock file.

    Raises:
        MrsisrError: If another training holds it.
    """

    def __init__(self, path: Path) -> None:
        import fcntl

        self._fh = open(path, "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise MrsisrError(
                f"`out` {path.parent}: another training is running in this folder; wait for it "
                "to end or choose another `out`"
            ) from None

    def release(self) -> None:
        """Drop the lock."""
        if not self._fh.closed:
            import fcntl

            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run_folder(out: Path, identity: dict[str, Any], resume: bool) -> RunLock:
    """Check a run folder may be used, lock it, and record (or check) what it belongs to.

    Args:
        out: The run folder.
        identity: What the run is (recipe, data, settings a resume must keep), for `run.json`.
        resume: Whether the run continues an earlier one.

    Returns:
        The held lock.

    Raises:
        MrsisrError: If the folder holds another run, something else, or a run made with other
            settings.
    """
    from mrsisr.outputs import check_writable

    if out.exists() and not out.is_dir():
        raise MrsisrError(f"`out` {out}: is a file, not a folder; choose a folder path")
    is_run = (out / RUN_FILE).is_file() or (out / "stages").is_dir()
    if not resume and is_run:
        raise MrsisrError(
            f"{out}: already holds a run; pass `resume` to continue it or choose another `out`"
        )
    if not is_run and out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise MrsisrError(
            f"`out` {out}: exists and is not a run folder (no {RUN_FILE}); choose a new or "
            "empty folder"
        )
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out / LOCK_FILE)
    mine = identity
    try:
        recorded = json.loads((out / RUN_FILE).read_text()) if (out / RUN_FILE).is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        lock.release()
        raise MrsisrError(f"{out / RUN_FILE}: unreadable ({exc}); choose another `out`") from None
    if recorded is not None:
        if not isinstance(recorded, dict):
            lock.release()
            raise MrsisrError(f"{out / RUN_FILE}: not a run record; choose another `out`")
        for key, value in mine.items():
            if key in recorded and recorded[key] != value:
                lock.release()
                where, was, now = first_difference(recorded[key], value, key)
                raise MrsisrError(
                    f"`resume` {out}: the run was made with {where} = {short(was)}, not "
                    f"{short(now)}; resume with the same settings or choose another `out`"
                )
    else:
        tmp = out / f".{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(mine, indent=2))
        os.replace(tmp, out / RUN_FILE)
    return lock


def checked_step(ck: Any, optimizer: Any, planned: int) -> int:
    """The step a checkpoint was written at, checked against its optimizer's own count.

    Args:
        ck: The loaded [`Checkpoint`][mrsisr.checkpoint.Checkpoint].
        optimizer: Its restored main optimizer.
        planned: `--steps` of this run.

    Returns:
        The step.

    Raises:
        CheckpointError: If the recorded step is not a count or disagrees with the optimizer.
        MrsisrError: If it is past `planned`.
    """
    where = ck.path / "state.json"
    step = ck.state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{where}: 'step' must be a non-negative integer, got {step!r}")
    counts = {
        int(float(v["step"])) for v in optimizer.state.values() if "step" in v
    }  # Adam counts its own updates: they must agree with the recorded step
    if counts and counts != {step}:
        raise CheckpointError(
            f"{where}: 'step' is {step} but the optimizer state has taken {sorted(counts)[0]} "
            "steps; the checkpoint was altered, use an earlier one"
        )
    if step > planned:
        raise MrsisrError(
            f"{ck.path}: checkpoint is at step {step}, past `steps` {planned}; pass `steps` {step} "
            "or more"
        )
    return step
