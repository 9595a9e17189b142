"""Scores kept as they are measured, so an interrupted study resumes where it stopped.

A long study (50 maps per scale, 1000-NFE rows) runs for hours on a CPU. After each model has
been scored at one scale, its per-map scores are written to a small JSON file in the output
folder; run again with the same settings and `--out`, those rows are read back instead of
sampled again. The file records what it belongs to (the study and every setting that changes the
scores, and the mrsisr version); a file from other settings is ignored and replaced. Each row
also records a [`fingerprint`][mrsisr.eval.cache.fingerprint] of the model's weights and a digest
of the maps it scored, so a model whose weights were replaced between two runs (a retrained
initializer) is scored again while the others are read back, and rows never pair with other
maps. It stays beside the results, so a study re-run after retraining one model samples
only that model.

Examples:
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / ".study.partial.json"
    >>> cache = ScoreCache(path, {"study": "demo", "limit": 2})
    >>> cache.put("ftddm", 4, 2, {"ssim": np.array([0.9, 0.8])}, 1.5, fingerprint="abc")
    >>> again = ScoreCache(path, {"study": "demo", "limit": 2})
    >>> values, seconds = again.get("ftddm", 4, 2, fingerprint="abc")
    >>> values["ssim"].tolist(), seconds
    ([0.9, 0.8], 1.5)
    >>> again.get("ftddm", 4, 2, fingerprint="new weights") is None
    True
    >>> ScoreCache(path, {"study": "demo", "limit": 3}).get("ftddm", 4, 2) is None
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mrsisr.eval.report import write_json

__all__ = ["ScoreCache", "fingerprint"]


class ScoreCache:
    """Per-map scores by (model, scale), kept in one JSON file.

    Args:
        path: The file (e.g. `OUT/.truncation.partial.json`).
        identity: JSON-able settings the scores depend on; a file with other settings is ignored.
        marker: A file to write beside it with the first row (the output folder's marker, so
            the command accepts the folder when it is run again), or `None`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        identity: Mapping[str, Any],
        marker: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.marker = marker
        self.identity = json.loads(json.dumps(identity, default=str))
        self.entries: dict[str, Any] = {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return  # no file, or a broken one (a crash while writing is ruled out by the rename)
        if isinstance(data, dict) and data.get("identity") == self.identity:
            self.entries = dict(data.get("entries", {}))

    @staticmethod
    def _key(model: str, scale: int, n: int) -> str:
        return f"{model}|x{int(scale)}|{int(n)}"

    def get(
        self, model: str, scale: int, n: int, fingerprint: str = ""
    ) -> tuple[dict[str, np.ndarray], float] | None:
        """Scores of `model` at `scale` on `n` maps, if kept for the same weights.

        Args:
            model: Row name.
            scale: Upscaling factor.
            n: Number of maps scored.
            fingerprint: The model's weights now (see
                [`fingerprint`][mrsisr.eval.cache.fingerprint]); a row kept for other weights
                is not returned.

        Returns:
            `(metric → per-map values, seconds)`, or `None`.
        """
        entry = self.entries.get(self._key(model, scale, n))
        if entry is None or entry.get("fingerprint", "") != fingerprint:
            return None
        values = {k: np.asarray(v, dtype=np.float64) for k, v in entry["values"].items()}
        return values, float(entry["seconds"])

    def put(
        self,
        model: str,
        scale: int,
        n: int,
        values: Mapping[str, Any],
        seconds: float,
        fingerprint: str = "",
    ) -> None:
        """Keep scores and write the file (atomically).

        Args:
            model: Row name.
            scale: Upscaling factor.
            n: Number of maps scored.
            values: Metric → per-map values.
            seconds: Sampling time over the maps.
            fingerprint: The model's weights (see [`fingerprint`][mrsisr.eval.cache.fingerprint]).
        """
        self.entries[self._key(model, scale, n)] = {
            "values": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in values.items()},
            "seconds": float(seconds),
            "fingerprint": str(fingerprint),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.marker is not None and not (self.path.parent / self.marker).is_file():
            (self.path.parent / self.marker).write_text(
                "partial results; this folder may be rewritten\n"
            )
        write_json(self.path, {"identity": self.identity, "entries": self.entries})

    def __len__(self) -> int:
        return len(self.entries)


def _critic_tensors(pipe: Any) -> set[int]:
    """`id`s of the parameters and buffers of a pipeline's training-only critics (TDPM's
    discriminator, MUNet's cWGAN critic): no weights file holds them, so a loaded model has them
    freshly drawn, and sampling never uses them."""
    import torch

    from mrsisr.stages import training_stages

    found: set[int] = set()
    for inner in ("pipeline", "pipe"):  # a study wrapper (e.g. ConditionedScale) holds one
        if isinstance(getattr(pipe, inner, None), torch.nn.Module):
            found |= _critic_tensors(getattr(pipe, inner))
    try:
        stages = training_stages(pipe)
    except Exception:  # a pipeline (or plugin) that cannot declare stages: no critic to skip
        return found
    critics = [m for stage in stages for m in getattr(stage, "critic_modules", {}).values()]
    trained = {id(m) for stage in stages for m in getattr(stage, "modules", {}).values()}
    idle = getattr(pipe, "critic", None)  # e.g. MUNet trained without its critic: never used
    if isinstance(idle, torch.nn.Module) and id(idle) not in trained:
        critics.append(idle)
    return found | {id(t) for m in critics for t in (*m.parameters(), *m.buffers())}


def fingerprint(pipe: Any) -> str:
    """A digest of a model: every tensor of its `state_dict` (name, dtype, bytes) but those of
    training-only critics, and its resolved recipe (`pipe.recipe.tables`: sampler, steps,
    temperatures, consistency).

    Two pipelines with the same weights and settings have the same fingerprint whatever device
    they are on; a retrained part or another setting (e.g. a recalibrated τf) changes it. A
    discriminator, drawn afresh whenever a model is loaded (the weights files leave it out),
    does not.

    Args:
        pipe: A pipeline (an `nn.Module`, or a wrapper holding one as `.pipe`).

    Returns:
        A hex digest (16 characters); for anything without a `state_dict`, a value that no kept
        row matches (such a model is sampled every time).

    Examples:
        >>> import torch
        >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        >>> fingerprint(a) == fingerprint(a), fingerprint(a) == fingerprint(b)
        (True, False)
    """
    import torch

    inner = getattr(pipe, "pipe", None)  # runtime.Accelerated wraps the pipeline
    if not hasattr(pipe, "state_dict") and hasattr(inner, "state_dict"):
        pipe = inner
    if not hasattr(pipe, "state_dict"):
        return f"unknown-{id(pipe)}"  # never matches a kept row: such a model is always sampled
    h = hashlib.sha256()
    skip = _critic_tensors(pipe)
    for name, t in sorted(pipe.state_dict(keep_vars=True).items()):
        if id(t) in skip:
            continue
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{t.numel()}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    tables = getattr(getattr(pipe, "recipe", None), "tables", None)
    if tables is not None:  # the resolved recipe: sampler, steps, temperatures, consistency
        h.update(json.dumps(tables, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
