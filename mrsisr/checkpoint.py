"""Safe, atomic training checkpoints: safetensors for tensors, JSON for everything else.

A checkpoint is a folder:

```text
step_000500/
  weights.safetensors   model parts and EMA copies ("<part>.<param>", "ema.<part>.<param>")
  state.safetensors     optimizer moments and RNG states (tensors only)
  state.json            recipe, step, optimizer hyper-parameters, RNG states, file hashes
```

It is written into a temporary sibling folder and renamed into place, so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one. Loading never
unpickles anything: tensors come from safetensors, the rest from JSON, and every file's SHA-256 is
checked, so a truncated or corrupted checkpoint fails with a
[`CheckpointError`][mrsisr.errors.CheckpointError] naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mrsisr.errors import CheckpointError

FORMAT = "mrsisr-checkpoint/1"
WEIGHTS = "weights.safetensors"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: The checkpoint folder.
        weights: Model tensors by key (`"<part>.<param>"`, EMA copies under `"ema."`).
        tensors: Optimizer and RNG tensors by key.
        state: The JSON state (recipe, step, optimizer structure, RNG, user metadata).
    """

    path: Path
    weights: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor]
    state: dict[str, Any]

    @property
    def step(self) -> int:
        """The training step the checkpoint was written at."""
        return int(self.state.get("step", 0))

    def part_state_dict(self, part: str, *, ema: bool = False) -> dict[str, torch.Tensor]:
        """Return the state dict of one model part.

        Args:
            part: Part name as saved (e.g. `denoiser`).
            ema: Return the EMA copy instead of the raw weights.

        Returns:
            A state dict for `module.load_state_dict`.

        Raises:
            CheckpointError: If the checkpoint has no such part.
        """
        prefix = f"ema.{part}." if ema else f"{part}."
        out = {k[len(prefix) :]: v for k, v in self.weights.items() if k.startswith(prefix)}
        if not out:
            have = sorted({k.split(".")[0] for k in self.weights if not k.startswith("ema.")})
            raise CheckpointError(
                f"{self.path}: no {'EMA ' if ema else ''}weights for part '{part}'; "
                f"it has: {', '.join(have) or '(none)'}"
            )
        return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _optimizer_to_flat(
    name: str, opt: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_meta: dict[str, dict[str, Any]] = {}
    for idx, slots in sd["state"].items():
        meta: dict[str, Any] = {}
        for key, value in slots.items():
            if torch.is_tensor(value):
                tkey = f"optim.{name}.{idx}.{key}"
                tensors[tkey] = value.detach().cpu().contiguous()
                meta[key] = {"tensor": tkey}
            else:
                meta[key] = {"value": value}
        state_meta[str(idx)] = meta
    return {"param_groups": sd["param_groups"], "state": state_meta}, tensors


def _optimizer_from_flat(
    entry: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for idx, slots in entry["state"].items():
        state[int(idx)] = {
            key: (tensors[spec["tensor"]] if "tensor" in spec else spec["value"])
            for key, spec in slots.items()
        }
    return {"state": state, "param_groups": entry["param_groups"]}


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Capture Python, NumPy and torch RNG states (JSON part, tensor part).

    Returns:
        A JSON-serialisable dict and a dict of tensors.
    """
    py = random.getstate()
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": _jsonable(np.random.get_state()),
    }, tensors


def set_rng_state(state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """Restore RNG states captured by [`rng_state`][mrsisr.checkpoint.rng_state].

    Args:
        state: The JSON part.
        tensors: The tensor part.
    """
    if "python" in state:
        v, internal, gauss = state["python"]
        random.setstate((v, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, list)):
        return [_jsonable(o) for o in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    modules: Mapping[str, nn.Module],
    ema: Mapping[str, nn.Module] | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    state: Mapping[str, Any] | None = None,
    save_rng: bool = True,
) -> Path:
    """Write a checkpoint folder atomically.

    Args:
        path: The checkpoint folder to create (replaced if it exists).
        modules: Model parts to save, by part name.
        ema: EMA copies of parts, by part name.
        optimizers: Optimizers, by name.
        state: JSON-serialisable metadata (recipe, step, losses, ...); must include `step`.
        save_rng: Also save the Python, NumPy and torch RNG states.

    Returns:
        The checkpoint folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights: dict[str, torch.Tensor] = {}
    for part, module in modules.items():
        for k, v in module.state_dict().items():
            weights[f"{part}.{k}"] = v.detach().cpu().contiguous()
    for part, module in (ema or {}).items():
        for k, v in module.state_dict().items():
            weights[f"ema.{part}.{k}"] = v.detach().cpu().contiguous()
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"format": FORMAT, **dict(state or {})}
    meta["optimizers"] = {}
    for name, opt in (optimizers or {}).items():
        entry, t = _optimizer_to_flat(name, opt)
        meta["optimizers"][name] = entry
        tensors.update(t)
    if save_rng:
        rng_json, rng_tensors = rng_state()
        meta["rng"] = rng_json
        tensors.update(rng_tensors)

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file(weights, str(tmp / WEIGHTS))
        save_file(tensors, str(tmp / STATE_TENSORS))
        meta["sha256"] = {
            WEIGHTS: _sha256(tmp / WEIGHTS),
            STATE_TENSORS: _sha256(tmp / STATE_TENSORS),
        }
        with open(tmp / STATE_JSON, "w") as fh:
            json.dump(meta, fh, indent=1, default=_json_default)
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_checkpoint(path: str | os.PathLike[str], *, verify: bool = True) -> Checkpoint:
    """Read a checkpoint folder without unpickling anything.

    Args:
        path: The checkpoint folder.
        verify: Check the SHA-256 of every file against `state.json`.

    Returns:
        The loaded [`Checkpoint`][mrsisr.checkpoint.Checkpoint] (tensors on CPU).

    Raises:
        CheckpointError: If a file is missing, truncated, corrupted or not an mrsisr checkpoint.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint folder not found")
    try:
        with open(path / STATE_JSON) as fh:
            state = json.load(fh)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path / STATE_JSON}: missing; not a complete mrsisr checkpoint"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path / STATE_JSON}: corrupted ({exc}); use an earlier checkpoint"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path / STATE_JSON}: not an {FORMAT} checkpoint")
    hashes = state.get("sha256", {})
    files = {}
    for name in (WEIGHTS, STATE_TENSORS):
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing; not a complete mrsisr checkpoint")
        if verify and hashes.get(name) != _sha256(f):
            raise CheckpointError(
                f"{f}: contents do not match the recorded hash (truncated or corrupted); use an earlier checkpoint"
            )
        try:
            files[name] = load_file(str(f))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{f}: unreadable ({exc}); use an earlier checkpoint") from None
    return Checkpoint(path, files[WEIGHTS], files[STATE_TENSORS], state)


def restore_checkpoint(
    ckpt: Checkpoint,
    *,
    modules: Mapping[str, nn.Module],
    ema: Mapping[str, nn.Module] | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    restore_rng: bool = True,
) -> None:
    """Load weights, EMA weights, optimizer states and RNG states from a checkpoint.

    Args:
        ckpt: A loaded checkpoint.
        modules: Parts to fill, by name (strict: every key must match).
        ema: EMA copies to fill.
        optimizers: Optimizers to fill, by name.
        restore_rng: Also restore the RNG states.

    Raises:
        CheckpointError: If a part or optimizer is missing or does not match.
    """
    for part, module in modules.items():
        _load_into(ckpt, module, ckpt.part_state_dict(part), part)
    for part, module in (ema or {}).items():
        _load_into(ckpt, module, ckpt.part_state_dict(part, ema=True), f"ema.{part}")
    saved = ckpt.state.get("optimizers", {})
    for name, opt in (optimizers or {}).items():
        if name not in saved:
            raise CheckpointError(f"{ckpt.path}: no optimizer '{name}' in this checkpoint")
        try:
            opt.load_state_dict(_optimizer_from_flat(saved[name], ckpt.tensors))
        except (KeyError, ValueError) as exc:
            raise CheckpointError(
                f"{ckpt.path}: optimizer '{name}' does not match ({exc})"
            ) from None
    if restore_rng and "rng" in ckpt.state:
        set_rng_state(ckpt.state["rng"], ckpt.tensors)


def _load_into(ckpt: Checkpoint, module: nn.Module, sd: dict[str, torch.Tensor], part: str) -> None:
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(" ".join(first[:3]).split())[:300]
        raise CheckpointError(
            f"{ckpt.path}: weights of part '{part}' do not fit this model ({detail}); "
            "was it trained with another recipe or size?"
        ) from None
