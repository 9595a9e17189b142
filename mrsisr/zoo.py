"""Trained weights of the zoo: load a ready pipeline offline, or export a training run into the zoo.

Shipped weights live next to the recipes, as fp16 safetensors with a JSON card:

```text
zoo/weights/<recipe>-<size>.safetensors   "<part>.<param>" tensors (critics left out)
zoo/weights/<recipe>-<size>.json          how they were trained (recipe, data, steps, time, device)
```

Examples:
    ```python
    import mrsisr

    pipeline = mrsisr.load("ftddm", size="small")        # raises if no weights are shipped
    x0 = pipeline.sample(batch.cond)
    ```
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from mrsisr.errors import CheckpointError
from mrsisr.outputs import check_writable
from mrsisr.recipes import load_recipe, zoo_dir

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
    from mrsisr.recipes import _read_toml
    from mrsisr.registries import RECIPES

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

    from mrsisr.pipeline import pipeline_parts
    from mrsisr.train.engine import WEIGHTS_FILE, load_weights_into

    path = Path(path)
    file = path / WEIGHTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"{file}: weights not found")
    verify_weights(file, _card_of(path))
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


def load(
    name: str,
    size: str = "small",
    *,
    weights: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> Any:
    """Build a recipe and load its trained weights: a ready pipeline, offline.

    Args:
        name: Recipe name (or TOML path).
        size: Size variant whose shipped weights to load.
        weights: A weights file or run folder to load instead of the shipped weights.
        overrides: Recipe overrides that keep the networks' shapes (sampler, steps, τd, τf).
        device: Where to put the pipeline.

    Returns:
        The pipeline in eval mode.

    Raises:
        CheckpointError: If no weights are shipped for this recipe and size (the message says
            how to train them) or the weights do not fit.
    """
    recipe = load_recipe(name, size=size, overrides=overrides)
    source = Path(weights) if weights is not None else weights_path(recipe.name, size)
    if weights is None and not source.is_file():
        raise CheckpointError(
            f"no shipped weights for '{recipe.name}' at size '{size}' ({source}); train them with "
            f"`mrsisr train {recipe.name} --size {size} --out RUN` and pass weights=RUN"
        )
    _check_trained_t_start(recipe, source)
    pipeline = recipe.build()
    load_pipeline_weights(pipeline, source)
    return pipeline.to(device).eval()


def _card_of(source: Path) -> dict[str, Any] | None:
    return read_card(source / "card.json" if source.is_dir() else source.with_suffix(".json"))


def _check_trained_t_start(recipe: Any, source: Path) -> None:
    """A trained GAN or flow initializer models x at one timestep: refuse another t_start."""
    init = recipe.tables.get("initializer", {}).get("type")
    card = _card_of(source)
    if init in (None, "gaussian") or card is None:
        return
    trained = card.get("resolved_recipe", {}).get("pipeline", {}).get("t_start")
    wanted = recipe.tables.get("pipeline", {}).get("t_start")
    if trained is not None and wanted is not None and int(trained) != int(wanted):
        raise CheckpointError(
            f"{source}: its '{init}' initializer was trained to produce x at t_start={trained}, "
            f"not {wanted}; keep pipeline.t_start={trained} or retrain the initializer"
        )


def export_run(
    run: str | os.PathLike[str],
    *,
    dest: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float16,
    name: str | None = None,
    parts: Collection[str] | None = None,
    notes: str | None = None,
) -> Path:
    """Copy a finished training run into the zoo as compact weights plus a card.

    Args:
        run: A run folder written by `mrsisr train` (with `weights.safetensors` and `card.json`).
        dest: Folder to write into (default: `zoo/weights`).
        dtype: Floating dtype of the exported tensors (fp16 halves the size).
        name: File stem (default `<recipe>-<size>`).
        parts: Export only these parts (e.g. `["flow"]` for an ablation variant whose denoiser
            is FTDDM's shipped one); `None` exports all.
        notes: Free text for the card's `notes` (e.g. how a fine-tuned run began).

    Returns:
        The written weights file, `<dest>/<name>.safetensors`.

    Raises:
        CheckpointError: If the run is incomplete, or lacks one of `parts`.
    """
    from safetensors.torch import load_file, save_file

    run = Path(run)
    card_file, weights_file = run / "card.json", run / "weights.safetensors"
    if not (card_file.is_file() and weights_file.is_file()):
        raise CheckpointError(
            f"{run}: not a finished run (needs card.json and weights.safetensors)"
        )
    card = read_card(card_file) or {}
    if name is None:
        name = f"{check_name(card.get('recipe'), 'card recipe')}-{check_name(card.get('size'), 'card size')}"
    check_name(name, "--name")
    dest = Path(dest) if dest is not None else weights_dir()
    check_writable(dest, "--dest")
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{name}.safetensors"
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v)
        for k, v in load_file(str(weights_file)).items()
        if parts is None or k.split(".", 1)[0] in parts
    }
    missing = set(parts or ()) - {k.split(".", 1)[0] for k in tensors}
    if missing:
        raise CheckpointError(f"{run}: no weights for part(s) {', '.join(sorted(missing))}")
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, out)
    card = dict(
        card,
        exported_dtype=str(dtype).replace("torch.", ""),
        source_run=run.name,
        sha256=file_sha256(out),
    )
    if parts is not None:
        card["exported_parts"] = sorted(parts)
    if notes:
        card["notes"] = notes
    out.with_suffix(".json.tmp").write_text(json.dumps(card, indent=2))
    os.replace(out.with_suffix(".json.tmp"), out.with_suffix(".json"))
    return out
