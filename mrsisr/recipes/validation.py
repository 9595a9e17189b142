"""Recipe validation: every table against its registry entry and the constructor's signature.

Unknown keys are refused with the closest known one; `[train]` keys are type-checked. A recipe is
validated before any network is built, so a typo costs no time.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from mrsisr.errors import RecipeError, UnknownNameError
from mrsisr.recipes.core import TRAIN_KEYS, Recipe, _registries, slot_role

__all__ = ["accepted_keys", "validate_recipe"]


# --------------------------------------------------------------------------- validation
def validate_recipe(recipe: Recipe) -> None:
    """Check every table: known `type`, known keys, nested tables well formed.

    Keys are checked against the registered class's constructor signature, so a typo fails here,
    with the file, table and key in the message, before anything is built.

    Args:
        recipe: The resolved recipe.

    Raises:
        RecipeError: On the first problem found.
    """
    if "pipeline" not in recipe.tables:
        raise RecipeError(f"{recipe.where}: no [pipeline] table; add one with a `type`")
    for name, table in recipe.tables.items():
        if name == "train":
            _validate_train(recipe, table)
        else:
            _validate_table(recipe, name, table, slot_role(name))
    # the pipeline must accept every top-level part as a keyword
    kind = recipe.tables["pipeline"]["type"]
    accepted, var_kw = accepted_keys(_registries(recipe)["pipelines"].get(kind))
    for name in recipe.tables:
        if name not in ("pipeline", "train") and not var_kw and name not in accepted:
            raise RecipeError(
                f"{recipe.where}: [{name}] is not a part of pipeline '{kind}'; it takes: "
                f"{', '.join(sorted(accepted))}"
            )


def _validate_train(recipe: Recipe, table: Any) -> None:
    from mrsisr.lr_schedules import LR_SCHEDULES

    if not isinstance(table, Mapping):
        raise RecipeError(f"{recipe.where}: [train] must be a table")
    for key, value in table.items():
        if key not in TRAIN_KEYS:
            raise RecipeError(
                f"{recipe.where}: [train] unknown key '{key}'; valid keys: {', '.join(sorted(TRAIN_KEYS))}"
            )
        kind = TRAIN_KEYS[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RecipeError(
                f"{recipe.where}: [train] key '{key}' must be a {kind.__name__}, got {value!r}"
            )
    if table.get("lr_schedule", "constant") not in LR_SCHEDULES:
        raise RecipeError(
            f"{recipe.where}: [train] key 'lr_schedule' must be one of {', '.join(LR_SCHEDULES)}"
        )
    if table.get("warmup_steps", 0) < 0:
        raise RecipeError(f"{recipe.where}: [train] key 'warmup_steps' must be non-negative")


def _validate_table(recipe: Recipe, path: str, table: Any, role: str) -> None:
    where = recipe.where
    if not isinstance(table, Mapping):
        raise RecipeError(f"{where}: [{path}] must be a table")
    if "type" not in table:
        raise RecipeError(f"{where}: [{path}] has no 'type' key; say which {role} entry to use")
    kind = table["type"]
    if not isinstance(kind, str):
        raise RecipeError(f"{where}: [{path}] key 'type' must be a string")
    try:
        target = _registries(recipe)[role].get(kind)
    except UnknownNameError as exc:
        raise RecipeError(f"{where}: [{path}] key 'type': {exc}") from None
    _check_protocol(where, path, role, kind, target)
    accepted, var_kw = accepted_keys(target)
    for key, value in table.items():
        if key == "type":
            continue
        if not var_kw and key not in accepted:
            close = _closest(key, accepted)
            hint = f" Did you mean '{close}'?" if close else ""
            raise RecipeError(
                f"{where}: [{path}] unknown key '{key}' for {role} '{kind}'.{hint} "
                f"Valid keys: {', '.join(sorted(accepted)) or '(none)'}"
            )
        if isinstance(value, Mapping):
            if "type" not in value:
                raise RecipeError(
                    f"{where}: [{path}.{key}] has no 'type' key; nested tables are parts built "
                    f"from a registry"
                )
            _validate_table(recipe, f"{path}.{key}", value, slot_role(key))
        elif isinstance(value, float) and not math.isfinite(value):
            raise RecipeError(f"{where}: [{path}] key '{key}' must be a finite number")


PROTOCOL_MEMBERS: dict[str, tuple[str, ...]] = {
    "pipelines": ("sample", "nfe", "parts", "training_stages"),
    "initializers": ("sample", "nfe"),
    "samplers": ("nfe",),
    "schedules": ("q_sample",),
}
"""What a registered class of each role must define (the protocols of `mrsisr.types`)."""


def _check_protocol(where: str, path: str, role: str, kind: str, target: Any) -> None:
    """Refuse a registered class that lacks a member its role's protocol needs (before building)."""
    if not isinstance(target, type):
        return  # a factory function: its product is checked when it is used
    missing = [m for m in PROTOCOL_MEMBERS.get(role, ()) if not hasattr(target, m)]
    if missing:
        raise RecipeError(
            f"{where}: [{path}] {role} '{kind}' ({target.__module__}.{target.__qualname__}) has "
            f"no {', '.join(missing)}: it does not keep the {role} contract of mrsisr.types"
        )


def accepted_keys(target: Any) -> tuple[set[str], bool]:
    """The keyword arguments a component's constructor takes, from its signature.

    Args:
        target: A registered class or factory.

    Returns:
        `(names, takes_any)`: argument names, and whether it also takes `**kwargs` (then any
        key is accepted; also when the signature cannot be read).
    """
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return set(), True
    names = set()
    var_kw = False
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(p.name)
    names.discard("self")
    return names, var_kw


def _closest(key: str, options: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, sorted(options), n=1, cutoff=0.6)
    return match[0] if match else None
