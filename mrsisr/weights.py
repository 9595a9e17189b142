"""Weights on disk: safetensors files of a pipeline's parts, their cards, and the zoo's layout.

The shipped weights live next to the recipes, as fp16 safetensors with a JSON card:

```text
zoo/weights/<recipe>-<size>.safetensors   "<part>.<param>" tensors (critics left out)
zoo/weights/<recipe>-<size>.json          how they were trained (recipe, data, steps, time, device)
```

A training run folder holds the same pair as `weights.safetensors` and `card.json`; a training
checkpoint folder (`stages/<stage>/latest`) can be read too (its EMA weights). This module only
reads and writes: [`mrsisr.load`][mrsisr.zoo.load] builds a pipeline and fills it from here, and
the training engine writes through it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mrsisr.checkpoint import load_checkpoint
from mrsisr.errors import CheckpointError
from mrsisr.pipelines.base import pipeline_parts
from mrsisr.recipes.core import _read_toml, zoo_dir
from mrsisr.registries import RECIPES

WEIGHTS_FILE = "weights.safetensors"
"""The weights file of a run folder."""
CARD_FILE = "card.json"
"""The card of a run folder."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_name(value: Any, what: str) -> str:
    """Refuse a recipe, size or file name that is not a plain identifier.

    Names become file names under `zoo/weights`; `../x`, `a/b` or an empty name would reach
    outside it.

    Args:
        value: The name.
        what: How messages name the field (e.g. `card recipe`).

    Returns:
        The name.

    Raises:
        CheckpointError: If it is not letters, digits, `_`, `-` and `.` (not starting with `.`).
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise CheckpointError(
            f"{what} {value!r}: not a plain name (letters, digits, _ - .); rename it"
        )
    return value


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, hex.

    Args:
        path: The file.

    Returns:
        64 hex digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read and check a weights card (`<weights>.json` or a run's `card.json`).

    Args:
        path: The card file.

    Returns:
        The card, or `None` if the file does not exist.

    Raises:
        CheckpointError: If it is not a JSON object with sane values (one line naming the field).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable weights card ({exc}); restore it") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"{path}: a weights card must be a JSON object; restore it")
    resolved = card.get("resolved_recipe", {})
    if not isinstance(resolved, dict) or not isinstance(resolved.get("pipeline", {}), dict):
        raise CheckpointError(f"{path}: field 'resolved_recipe' must be a table of tables")
    t_start = resolved.get("pipeline", {}).get("t_start")
    if t_start is not None and (not isinstance(t_start, int) or isinstance(t_start, bool)):
        raise CheckpointError(
            f"{path}: field 'resolved_recipe.pipeline.t_start' must be an integer, got {t_start!r}"
        )
    digest = card.get("sha256")
    if digest is not None and not (
        isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest)
    ):
        raise CheckpointError(f"{path}: field 'sha256' must be 64 hex digits")
    return card


def verify_weights(file: str | os.PathLike[str], card: Mapping[str, Any] | None) -> None:
    """Check a weights file against the SHA-256 its card records (if it records one).

    Args:
        file: The `.safetensors` file.
        card: Its card.

    Raises:
        CheckpointError: If the file's hash differs (corrupted or replaced).
    """
    digest = (card or {}).get("sha256")
    if digest and file_sha256(file) != digest:
        raise CheckpointError(
            f"{file}: contents do not match the SHA-256 in its card (corrupted or replaced); "
            "restore the file, e.g. with git checkout"
        )


def weights_dir() -> Path:
    """Return the folder of shipped weights (`zoo/weights`).

    Returns:
        The folder (it may not exist).
    """
    return zoo_dir() / "weights"


def weights_path(name: str, size: str) -> Path:
    """Return where the shipped weights of a recipe and size live.

    A zoo recipe whose `[recipe]` table says `weights_from = "ddpm"` (the same network with
    another sampler, such as `ddpm_respace`) uses that recipe's weights.

    Args:
        name: Recipe name.
        size: Size variant.

    Returns:
        `zoo/weights/<name>-<size>.safetensors`.
    """
    if name in RECIPES:
        name = str(_read_toml(RECIPES.get(name)).get("recipe", {}).get("weights_from", name))
    check_name(name, "recipe name")
    check_name(size, "size")
    return weights_dir() / f"{name}-{size}.safetensors"


def weight_card(name: str, size: str) -> dict[str, Any] | None:
    """Return the card of shipped weights, or `None` if there are none.

    Args:
        name: Recipe name.
        size: Size variant.

    Returns:
        The card (recipe, data, steps, wall time, device, validation losses).
    """
    return read_card(weights_path(name, size).with_suffix(".json"))


def load_pipeline_weights(
    pipeline: Any, path: str | os.PathLike[str], parts: Collection[str] | None = None
) -> None:
    """Fill a built pipeline's parts from a weights file (or a run folder).

    Parts that Table 1 counts must be present; uncounted parts (a discriminator or critic) may be
    absent, a frozen pre-network is loaded when present.

    Args:
        pipeline: A built pipeline.
        path: A `.safetensors` file or a run folder with `weights.safetensors`.
        parts: Load (and require) only these parts, e.g. `["denoiser"]` from one file and
            `["flow"]` from another; `None` loads every part the file has.

    Raises:
        CheckpointError: If the file is missing or damaged, or a required part does not fit.
    """
    from safetensors import safe_open

    path = Path(path)
    file = path / WEIGHTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"{file}: weights not found")
    verify_weights(file, card_of(path))
    try:
        with safe_open(str(file), framework="pt") as fh:
            present = {k.split(".", 1)[0] for k in fh.keys()}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise CheckpointError(
            f"{file}: unreadable weights ({' '.join(str(exc).split())[:200]})"
        ) from None
    wanted = {}
    for part, (module, counted) in pipeline_parts(pipeline).items():
        if parts is not None and part not in parts:
            continue
        if part in present:
            wanted[part] = module
        elif counted or parts is not None:
            raise CheckpointError(
                f"{file}: no weights for part '{part}'; is it for another recipe?"
            )
    load_weights_into(wanted, file)


def initializer_parts(pipeline: Any) -> list[str]:
    """The trained parts of a pipeline besides its denoiser: what an initializer file holds.

    Uncounted training-only parts (a GAN's discriminator) are left out: runs do not keep them.

    Args:
        pipeline: A built pipeline.

    Returns:
        Part names, e.g. `["flow"]` (FTDDM) or `["generator"]` (TDPM).
    """
    return [
        p for p, (_, counted) in pipeline_parts(pipeline).items() if p != "denoiser" and counted
    ]


def card_of(source: Path) -> dict[str, Any] | None:
    """Read the card of a weights file (`<stem>.json`) or a run folder (`card.json`).

    Args:
        source: The weights file or run folder.

    Returns:
        The card, or `None` when there is none.
    """
    return read_card(source / "card.json" if source.is_dir() else source.with_suffix(".json"))


def check_trained_t_start(recipe: Any, source: Path) -> None:
    """A trained GAN or flow initializer models x at one timestep: refuse another t_start.

    Args:
        recipe: The recipe about to be built.
        source: Its weights file or run folder.

    Raises:
        CheckpointError: If the card's `t_start` differs from the recipe's.
    """
    from mrsisr.registries import INITIALIZERS

    init = recipe.tables.get("initializer", {}).get("type")
    card = card_of(source)
    if init is None or card is None or not hasattr(INITIALIZERS.get(init), "training_stages"):
        return  # an untrained initializer (Gaussian noise) fits any t_start
    trained = card.get("resolved_recipe", {}).get("pipeline", {}).get("t_start")
    wanted = recipe.tables.get("pipeline", {}).get("t_start")
    if trained is not None and wanted is not None and int(trained) != int(wanted):
        raise CheckpointError(
            f"{source}: its '{init}' initializer was trained to produce x at t_start={trained}, "
            f"not {wanted}; keep pipeline.t_start={trained} or retrain the initializer"
        )


def save_weights(
    parts: Mapping[str, nn.Module], path: str | os.PathLike[str], dtype: torch.dtype | None = None
) -> Path:
    """Write inference weights (`"<part>.<param>"`) to a safetensors file atomically.

    Args:
        parts: Modules by part name.
        path: Output file.
        dtype: Cast floating tensors to this dtype (e.g. `torch.float16` for the zoo).

    Returns:
        The written file.
    """
    path = Path(path)
    tensors = {}
    for part, module in parts.items():
        for k, v in module.state_dict().items():
            v = v.detach().cpu()
            if dtype is not None and v.is_floating_point():
                v = v.to(dtype)
            tensors[f"{part}.{k}"] = v.contiguous()
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)
    return path


def load_weights_into(
    parts: Mapping[str, nn.Module],
    source: str | os.PathLike[str],
    rename: Mapping[str, str] | None = None,
    *,
    adapt: bool = False,
) -> None:
    """Load parts from a run folder, a weights file or a checkpoint folder.

    Args:
        parts: Modules to fill, by part name.
        source: A run folder (its `weights.safetensors`), a `.safetensors` file, or a checkpoint
            folder (its EMA weights when present).
        rename: Part name → name it has in `source`, when they differ (e.g. the Flow Enhancer's
            `pre_network` is the `network` of a MUNet-FS-cWGAN run).
        adapt: Load from a network of the same layout that differs in its inputs instead of
            requiring the exact shapes: a module's own `adapt_state_dict` (e.g. the UNet's, for
            other input channels) runs first, then
            [`grow_state_dict`][mrsisr.weights.grow_state_dict] fits smaller tensors in.

    Raises:
        CheckpointError: If the source is missing, unreadable, or lacks or mismatches a part.
    """
    source = Path(source)
    rename = dict(rename or {})
    if (source / "state.json").is_file():
        ck = load_checkpoint(source)
        for k, m in parts.items():
            name = rename.get(k, k)
            has_ema = any(key.startswith(f"ema.{name}.") for key in ck.weights)
            _strict_load(m, ck.part_state_dict(name, ema=has_ema), source, k, adapt=adapt)
        return
    file = source / WEIGHTS_FILE if source.is_dir() else source
    if not file.is_file():
        raise CheckpointError(f"{file}: weights not found")
    try:
        tensors = load_file(str(file))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise CheckpointError(
            f"{file}: unreadable weights ({' '.join(str(exc).split())[:200]})"
        ) from None
    for k, m in parts.items():
        prefix = f"{rename.get(k, k)}."
        sd = {key[len(prefix) :]: v for key, v in tensors.items() if key.startswith(prefix)}
        if not sd:
            have = sorted({key.split(".", 1)[0] for key in tensors})
            raise CheckpointError(
                f"{file}: no weights for part '{prefix[:-1]}'; it has: {', '.join(have)} "
                "(name one with --reuse STAGE=PATH#PART)"
            )
        _strict_load(m, sd, file, k, adapt=adapt)


def grow_state_dict(
    target: Mapping[str, torch.Tensor], source: Mapping[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Fit a smaller network's weights into a larger one of the same layout.

    A tensor of the same shape is copied. A weight that reads more inputs (larger along its
    second dimension, the same in every other) gets the source's values in its leading input
    columns and zeros in the new ones. A parameter the source lacks keeps the target's own value.
    When the new columns read a new feature (e.g. FTDDM's s-embedding concatenated to DDPM's
    timestep embedding), the grown network computes exactly what the source did until training
    moves those columns. A network of another width (a tensor that differs elsewhere) is refused.

    Args:
        target: The larger network's state dict (its shapes and its values for new tensors).
        source: The smaller network's state dict.

    Returns:
        `(state, grown, new)`: the state dict to load, the names of the tensors that were
        zero-padded, and those kept from `target`.

    Raises:
        CheckpointError: If the source has a tensor the target lacks, or one whose shape differs
            other than by more input columns.

    Examples:
        >>> import torch
        >>> state, grown, new = grow_state_dict(
        ...     {"w": torch.ones(2, 3), "b": torch.ones(2)}, {"w": torch.full((2, 2), 5.0)}
        ... )
        >>> state["w"].tolist(), grown, new
        ([[5.0, 5.0, 0.0], [5.0, 5.0, 0.0]], ['w'], ['b'])
    """
    out: dict[str, torch.Tensor] = {}
    grown: list[str] = []
    extra = sorted(set(source) - set(target))
    if extra:
        raise CheckpointError(
            f"the source has weights the target network lacks ({', '.join(extra[:4])}); "
            "only growing into a larger network is supported"
        )
    for key, ref in target.items():
        if key not in source:
            out[key] = ref.clone()
            continue
        src = source[key].to(ref.dtype)
        if src.shape == ref.shape:
            out[key] = src.clone()
            continue
        same_elsewhere = src.dim() == ref.dim() >= 2 and all(
            a == b for i, (a, b) in enumerate(zip(src.shape, ref.shape)) if i != 1
        )
        if not same_elsewhere or src.shape[1] > ref.shape[1]:
            raise CheckpointError(
                f"'{key}' is {tuple(src.shape)} in the source and {tuple(ref.shape)} here; only "
                "more input columns can be added (a network of another width does not fit)"
            )
        big = torch.zeros_like(ref)
        big[tuple(slice(0, n) for n in src.shape)] = src
        out[key] = big
        grown.append(key)
    return out, grown, sorted(set(target) - set(source))


def _strict_load(
    module: nn.Module,
    sd: Mapping[str, torch.Tensor],
    where: Path,
    part: str,
    *,
    adapt: bool = False,
) -> None:
    ref = module.state_dict()
    if adapt:
        rearranged = []
        if hasattr(module, "adapt_state_dict"):
            before = {k: tuple(v.shape) for k, v in sd.items()}
            sd = module.adapt_state_dict(sd)
            rearranged = [k for k, v in sd.items() if before.get(k) != tuple(v.shape)]
        try:
            sd, grown, new = grow_state_dict(ref, sd)
        except CheckpointError as exc:
            raise CheckpointError(f"{where}: part '{part}': {exc}") from None
        if grown or new or rearranged:
            print(
                f"note: {where}: part '{part}' adapted: {len(rearranged)} tensor(s) rearranged "
                f"to this network's inputs, {len(grown)} given new input columns (at zero), "
                f"{len(new)} new at their initial values "
                f"({', '.join(sorted({k.split('.')[0] for k in new}) or ['none'])})",
                file=sys.stderr,
            )
    sd = {k: v.to(ref[k].dtype) if k in ref else v for k, v in sd.items()}
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise CheckpointError(
            f"{where}: part '{part}' does not fit this model ({detail}); another recipe or size?"
        ) from None
