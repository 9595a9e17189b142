"""The models of a bench: recipe names (with their weights and `+suffix` variants) or pipelines.

[`load_models`][mrsisr.eval.models.load_models] checks the whole list first (unique names, weights
present, `--weights` only for benched models) and only then loads, so a typo costs no time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mrsisr.errors import CheckpointError, MrsisrError
from mrsisr.eval.report import LR_INPUT
from mrsisr.eval.scores import Model
from mrsisr.runtime import accelerate

__all__ = ["PHASE_VARIANTS", "VARIANTS", "load_models", "split_variant", "wants_phase"]


VARIANTS: dict[str, dict[str, Any]] = {
    "dc": {"consistency": {"type": "kspace"}},
    "dcp": {"consistency": {"type": "kspace"}},
}
"""Model-name suffixes of the bench: `ftddm+dc` is FTDDM with k-space data consistency, the
measured block estimated from the LR magnitude as the protocol leaves it; `ftddm+dcp` the same
with the acquisition's phase known (the protocol's complex truncated image is handed on as
`Condition.measured`, see [`PHASE_VARIANTS`][mrsisr.eval.models.PHASE_VARIANTS])."""

PHASE_VARIANTS = frozenset({"dcp"})
"""Suffixes whose rows see the acquisition with its phase (`MRSIDataset(measured="simulate")`);
every other row sees only the magnitude, as the protocol has it."""


def wants_phase(name: str) -> bool:
    """Whether a bench row sees the acquisition's phase (its name ends in a phase suffix).

    Args:
        name: A row name such as `ftddm+dcp`, or a label given with a pipeline.

    Returns:
        True for a suffix in [`PHASE_VARIANTS`][mrsisr.eval.models.PHASE_VARIANTS].

    Examples:
        >>> wants_phase("ftddm+dcp"), wants_phase("ftddm+dc"), wants_phase("ftddm")
        (True, False, False)
    """
    return name.partition("+")[2] in PHASE_VARIANTS


def split_variant(name: str) -> tuple[str, dict[str, Any]]:
    """Split a bench model name into its recipe and the overrides of its `+suffix`.

    Args:
        name: E.g. `ftddm` or `ftddm+dc`.

    Returns:
        `(recipe, overrides)`.

    Raises:
        MrsisrError: For an unknown suffix.

    Examples:
        >>> split_variant("tdpm+dc")
        ('tdpm', {'consistency': {'type': 'kspace'}})
    """
    base, plus, suffix = name.partition("+")
    if not plus:
        return name, {}
    if suffix not in VARIANTS:
        raise MrsisrError(
            f"`models` {name}: unknown suffix '+{suffix}'; known: "
            + ", ".join(f"+{k}" for k in VARIANTS)
        )
    return base, dict(VARIANTS[suffix])


def _model_from_recipe(name: str, cfg: Any, device: torch.device) -> Model:
    from mrsisr.recipes import load_recipe
    from mrsisr.zoo import load

    base, extra = split_variant(name)
    over = {**(cfg.overrides or {}), **extra}
    weights = dict(cfg.weights or {})
    source = weights.get(name, weights.get(base))
    if cfg.untrained and source is None:
        pipe = load_recipe(base, size=cfg.size, overrides=over).build()
        return Model(name, pipe.to(device).eval(), "untrained")
    pipe = load(base, size=cfg.size, weights=source, overrides=over, device=device)
    return Model(name, pipe, str(source or "shipped"))


def _check_models(models: Sequence[str | tuple[str, Any]], cfg: Any) -> None:
    """Every problem with the model list (names, weights) before any work."""
    from mrsisr.recipes import load_recipe
    from mrsisr.weights import weights_path

    weights = dict(cfg.weights or {})
    names = [m if isinstance(m, str) else m[0] for m in models]
    if not names:
        raise MrsisrError("`models`: give at least one model")
    if len(set(names)) != len(names) or LR_INPUT in names:
        raise MrsisrError(f"`models`: names must be unique and not '{LR_INPUT}', got {names}")
    recipes = [m for m in models if isinstance(m, str)]
    unknown = set(weights) - set(names) - {split_variant(m)[0] for m in recipes}
    if unknown:
        raise MrsisrError(f"`weights` names models not benched: {', '.join(sorted(unknown))}")
    missing = []
    for m in recipes:
        base, extra = split_variant(m)
        recipe = load_recipe(base, size=cfg.size, overrides={**(cfg.overrides or {}), **extra})
        has = m in weights or base in weights or weights_path(recipe.name, cfg.size).is_file()
        if not cfg.untrained and not has:
            missing.append(recipe.name)
    if missing:
        raise CheckpointError(
            f"no shipped '{cfg.size}' weights for {', '.join(missing)}; train them "
            f"(`mrsisr train NAME --size {cfg.size} --out RUN`) and pass --weights NAME=RUN, "
            "choose models listed with weights by `mrsisr list recipes`, or pass --untrained to "
            "time random weights"
        )


def load_models(models: Sequence[str | tuple[str, Any]], cfg: Any) -> list[Model]:
    """Check, then load every model: recipe names with their weights, or `(label, pipeline)`.

    Args:
        models: Recipe names (`ftddm`, `ftddm+dc`) or `(label, pipeline)` pairs.
        cfg: The bench's options (size, weights, untrained, overrides, device).

    Returns:
        The models, in order, in eval mode on the device.

    Raises:
        MrsisrError: For repeated names or `--weights` for a model not benched.
        CheckpointError: If a recipe has no weights (before anything is loaded).
    """
    _check_models(models, cfg)
    device = torch.device(cfg.device)
    out = []
    for m in models:
        if isinstance(m, str):
            out.append(_model_from_recipe(m, cfg, device))
        else:
            out.append(Model(m[0], m[1].to(device).eval(), "given"))
        if cfg.channels_last and isinstance(out[-1].pipe, torch.nn.Module):
            out[-1].pipe.to(memory_format=torch.channels_last)
        precision, backend = getattr(cfg, "precision", "fp32"), getattr(cfg, "compile", None)
        if precision != "fp32" or backend:
            pipe = accelerate(out[-1].pipe, device, precision, backend)
            out[-1] = Model(out[-1].name, pipe, out[-1].weights)
    return out
