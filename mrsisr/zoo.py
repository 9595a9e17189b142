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

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from mrsisr.errors import CheckpointError, RecipeError
from mrsisr.outputs import check_writable
from mrsisr.recipes import accepted_keys, load_recipe
from mrsisr.weights import (
    CARD_FILE,
    WEIGHTS_FILE,
    check_name,
    check_trained_t_start,
    file_sha256,
    load_pipeline_weights,
    read_card,
    weights_dir,
    weights_path,
)


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
    check_trained_t_start(recipe, source)
    pipeline = recipe.build()
    load_pipeline_weights(pipeline, source)
    return pipeline.to(device).eval()


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
    card_file, weights_file = run / CARD_FILE, run / WEIGHTS_FILE
    if not (card_file.is_file() and weights_file.is_file()):
        raise CheckpointError(
            f"{run}: not a finished run (needs card.json and weights.safetensors)"
        )
    card = read_card(card_file) or {}
    if name is None:
        name = f"{check_name(card.get('recipe'), 'card recipe')}-{check_name(card.get('size'), 'card size')}"
    check_name(name, "`name`")
    dest = Path(dest) if dest is not None else weights_dir()
    check_writable(dest, "`dest`")
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


def _takes(role: str, table: Mapping[str, Any], key: str) -> bool:
    """Whether the component a recipe table names takes the argument `key` (by its signature)."""
    from mrsisr.registries import ROLES

    if "type" not in table:
        return False
    names, var_kw = accepted_keys(ROLES[role].get(table["type"]))
    return key in names or var_kw


def sampling_overrides(
    name: str,
    size: str = "small",
    *,
    steps: int | None = None,
    tau_d: float | None = None,
    tau_f: float | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Recipe overrides for the sampling knobs: number of steps, τd and τf.

    Each knob goes to the component that declares it (an argument of its constructor), whatever
    its registry name: `steps` to a sampler that takes `steps` (respace, DPM-Solver++, plugins);
    a sampler without one (the full ancestral chain) becomes `respace` with that many steps from
    the same `t_start` (the paper's "FTDDM with 50 steps"), keeping its τd. `tau_d` goes to a
    sampler that takes `tau_d`, `tau_f` to an initializer that takes `tau_f`.

    Args:
        name: Recipe name or TOML path.
        size: Size variant.
        steps: Sampler steps K.
        tau_d: Step-noise temperature of the sampler.
        tau_f: Prior temperature of the initializer.
        overrides: Overrides already asked for (e.g. `--set sampler.type=dpm_solver_pp`): the
            knobs go to the components as overridden.

    Returns:
        A nested override mapping for [`load_recipe`][mrsisr.recipes.load_recipe] or
        [`mrsisr.load`][mrsisr.zoo.load].

    Raises:
        RecipeError: If no component of the recipe takes the knob (e.g. `steps` for a one-step
            model).

    Examples:
        >>> sampling_overrides("ftddm", steps=50, tau_d=0.5)
        {'sampler': {'type': 'respace', 'steps': 50, 'tau_d': 0.5}}
    """
    recipe = load_recipe(name, size=size, overrides=overrides)
    sampler = dict(recipe.tables.get("sampler", {}))
    out: dict[str, Any] = {}
    if steps is not None:
        if not sampler:
            raise RecipeError(f"{recipe.where}: has no sampler, so `steps` does not apply")
        if int(steps) < 1:
            raise RecipeError(f"`steps` must be at least 1, got {steps}")
        if _takes("samplers", sampler, "steps"):
            out["sampler"] = {"steps": int(steps)}
        else:
            sampler = {"type": "respace", "steps": int(steps)} | (
                {"tau_d": sampler["tau_d"]} if "tau_d" in sampler else {}
            )
            out["sampler"] = dict(sampler)
    if tau_d is not None:
        if not _takes("samplers", sampler, "tau_d"):
            raise RecipeError(
                f"{recipe.where}: its sampler '{sampler.get('type', 'none')}' has no step-noise "
                "temperature, so `tau_d` does not apply"
            )
        out.setdefault("sampler", {})["tau_d"] = float(tau_d)
    if tau_f is not None:
        if not _takes("initializers", recipe.tables.get("initializer", {}), "tau_f"):
            raise RecipeError(f"{recipe.where}: its initializer has no prior temperature (`tau_f`)")
        out["initializer"] = {"tau_f": float(tau_f)}
    return out
