"""The recipe itself: load a TOML file, resolve `base` and sizes, apply overrides, build."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from mrsisr.errors import MrsisrError, RecipeError
from mrsisr.registry import Registry

SIZES = ("paper", "small", "tiny")
"""The size variants every zoo recipe provides."""

META_KEYS = {"name", "title", "description", "references", "base", "sizes", "tags", "weights_from"}
"""Keys allowed in a recipe's `[recipe]` table (`weights_from`: load another recipe's weights)."""

TRAIN_KEYS = {"lr_schedule": str, "warmup_steps": int}
"""Keys of a recipe's optional `[train]` table: training defaults that the command line can
override (`--lr-schedule`, `--warmup-steps`). It builds nothing."""

_SPECIAL_SLOTS = {
    "pipeline": "pipelines",
    "schedule": "schedules",
    "initializer": "initializers",
    "sampler": "samplers",
    "consistency": "consistency",
}


def slot_role(table: str) -> str:
    """Return the registry role that builds a table of the given name.

    Args:
        table: A table name such as `sampler` or `denoiser`.

    Returns:
        The role name (`samplers`, `backbones`, ...).
    """
    return _SPECIAL_SLOTS.get(table, "backbones")


def zoo_dir() -> Path:
    """Return the folder that holds the built-in recipes (`zoo/`).

    Looks at `$MRSISR_ZOO`, then the copy inside an installed wheel (`mrsisr/_zoo`), then the
    repository checkout (`<repo>/zoo`, for editable installs).

    Returns:
        The zoo folder (it may not exist if mrsisr was installed without it).
    """
    env = os.environ.get("MRSISR_ZOO")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1]  # the mrsisr package
    for candidate in (here / "_zoo", here.parent / "zoo"):
        if candidate.is_dir():
            return candidate
    return here.parent / "zoo"


def register_zoo(registry: Registry) -> None:
    """Register every `*.toml` in the zoo folder under its file stem.

    Args:
        registry: The recipe registry to fill (its entries are `Path`s).
    """
    folder = zoo_dir()
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.toml")):
        registry.register(path.stem, path, description=_recipe_title(path))


def _recipe_title(path: Path) -> str:
    try:
        meta = _read_toml(path).get("recipe", {})
    except RecipeError as exc:
        return f"(unreadable: {exc})"
    return str(meta.get("title") or meta.get("description") or path.stem)


_PARSED: dict[tuple[str, int, int], dict[str, Any]] = {}


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse a recipe file once per content: later reads of an unchanged file reuse the parse."""
    try:
        st = os.stat(path)
        key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
        if key not in _PARSED:
            with open(path, "rb") as fh:
                _PARSED[key] = tomllib.load(fh)
        return copy.deepcopy(_PARSED[key])
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text; save the recipe as UTF-8") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a folder, not a recipe file") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc.strerror or exc})") from None


def _registries(recipe: Recipe | None = None) -> Mapping[str, Registry]:
    if recipe is not None and recipe.registries is not None:
        return recipe.registries
    from mrsisr.registries import ROLES

    return ROLES


@dataclass
class Recipe:
    """A resolved recipe: metadata plus the part tables for one size.

    Attributes:
        name: Recipe name (file stem, or the `[recipe] name`).
        size: The size variant the tables were resolved for.
        source: The TOML file it came from (`None` for recipes built from a dict).
        meta: The `[recipe]` table.
        tables: Part tables after applying size overrides and user overrides, `type` included.
        sizes: Every size this recipe defines.
        registries: Role → registry used to validate and build; `None` means mrsisr's own
            ([`ROLES`][mrsisr.registries.ROLES]).
    """

    name: str
    size: str
    source: Path | None
    meta: dict[str, Any]
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    sizes: tuple[str, ...] = ("paper",)
    registries: Mapping[str, Registry] | None = field(default=None, repr=False, compare=False)

    @property
    def train(self) -> dict[str, Any]:
        """The `[train]` table: training defaults such as `lr_schedule` (empty if absent)."""
        return dict(self.tables.get("train", {}))

    @property
    def where(self) -> str:
        """How messages name this recipe: its file path, or its name."""
        return str(self.source) if self.source is not None else f"recipe '{self.name}'"

    def to_dict(self) -> dict[str, Any]:
        """Return the recipe as plain data (`[recipe]` first, then the parts).

        Returns:
            A dict that [`dumps_toml`][mrsisr.recipes.dumps_toml] turns back into TOML.
        """
        meta = dict(self.meta)
        meta["name"] = self.name
        meta["size"] = self.size
        meta.pop("sizes", None)
        return {"recipe": meta, **copy.deepcopy(self.tables)}

    def to_toml(self) -> str:
        """Return the fully resolved recipe as TOML text.

        Returns:
            TOML that reproduces exactly this configuration.
        """
        from mrsisr.recipes.toml_out import dumps_toml

        return dumps_toml(self.to_dict())

    def build(self) -> Any:
        """Build the pipeline this recipe describes, with freshly initialised weights.

        Returns:
            The pipeline (a [`Pipeline`][mrsisr.types.Pipeline]; an `nn.Module` for the built-in
            ones), with this recipe as its `recipe` attribute.

        Raises:
            RecipeError: If a component rejects its arguments; the message names the file,
                table and component.
        """
        if "pipeline" not in self.tables:
            raise RecipeError(f"{self.where}: no [pipeline] table; add one with a `type`")
        parts = {
            name: self._build_table(name, table, role=slot_role(name))
            for name, table in self.tables.items()
            if name not in ("pipeline", "train")
        }
        pipe = self._build_table("pipeline", self.tables["pipeline"], role="pipelines", extra=parts)
        try:  # the resolved recipe travels with the pipeline, like diffusers' `.config`
            pipe.recipe = replace(self, registries=None)
        except AttributeError:  # a plugin pipeline with __slots__ or a read-only attribute
            pass
        return pipe

    def _build_table(
        self,
        path: str,
        table: Mapping[str, Any],
        *,
        role: str,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs: dict[str, Any] = {}
        for key, value in table.items():
            if key == "type":
                continue
            if isinstance(value, Mapping) and "type" in value:
                kwargs[key] = self._build_table(f"{path}.{key}", value, role=slot_role(key))
            else:
                kwargs[key] = _to_python(value)
        kwargs.update(extra or {})
        target = _registries(self)[role].get(table["type"])
        try:
            return target(**kwargs)
        except MrsisrError as exc:
            raise RecipeError(f"{self.where}: [{path}] {exc}") from None
        except (TypeError, ValueError, RuntimeError, ArithmeticError, AssertionError) as exc:
            # constructors reject bad values in many ways (num_heads = 0 divides by zero,
            # model_channels = -8 makes torch raise RuntimeError): one line for all of them
            detail = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise RecipeError(
                f"{self.where}: [{path}] type '{table['type']}' rejected its arguments: {detail}"
            ) from None


def _to_python(value: Any) -> Any:
    # TOML arrays arrive as lists; constructors of torch modules prefer tuples for shapes.
    if isinstance(value, list):
        return tuple(_to_python(v) for v in value)
    return value


def load_recipe(
    name_or_path: str | os.PathLike[str],
    size: str = "paper",
    overrides: Mapping[str, Any] | None = None,
    *,
    validate: bool = True,
    registries: Mapping[str, Registry] | None = None,
) -> Recipe:
    """Load a recipe by zoo name or file path, resolve a size and apply overrides.

    Args:
        name_or_path: A registered recipe name (`"ftddm"`) or a path to a TOML file.
        size: `"paper"`, `"small"` or `"tiny"` (or another size the recipe defines).
        overrides: Extra overrides applied after the size, either nested
            (`{"sampler": {"steps": 10}}`) or dotted (`{"sampler.steps": 10}`). Changing a
            table's `type` replaces that table.
        validate: Check every table against the registries and constructor signatures.
        registries: Role → registry to validate and build with (tests and embedding
            applications); `None` uses mrsisr's own.

    Returns:
        The resolved [`Recipe`][mrsisr.recipes.Recipe].

    Raises:
        RecipeError: For a malformed recipe; the message names the file, table and key.
        UnknownNameError: For an unknown recipe name (the message lists the zoo).
    """
    path = _locate(name_or_path)
    data = _read_toml(path)
    recipe = _resolve(data, path, size, seen=(path.resolve(),))
    recipe.registries = registries
    if overrides:
        recipe.tables = _merge_tables(recipe.tables, _nest(overrides), where=f"{path} (overrides)")
    if validate:
        from mrsisr.recipes.validation import validate_recipe

        validate_recipe(recipe)
    return recipe


def _locate(name_or_path: str | os.PathLike[str]) -> Path:
    text = os.fspath(name_or_path)
    if text.endswith(".toml") or os.sep in text or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found")
        return path
    from mrsisr.registries import RECIPES

    if text not in RECIPES:  # "FTDDM" finds ftddm when the match is unique
        folded = [n for n in RECIPES.names() if n.lower() == text.lower()]
        if len(folded) == 1:
            text = folded[0]
    return Path(RECIPES.get(text))


def _resolve(data: dict[str, Any], path: Path, size: str, seen: tuple[Path, ...]) -> Recipe:
    meta = data.get("recipe")
    if not isinstance(meta, dict):
        raise RecipeError(f"{path}: missing [recipe] table (name, title, description)")
    for key in meta:
        if key not in META_KEYS:
            raise RecipeError(
                f"{path}: [recipe] unknown key '{key}'; allowed: {', '.join(sorted(META_KEYS))}"
            )
    sizes = data.get("sizes", {})
    if not isinstance(sizes, dict):
        raise RecipeError(f"{path}: [sizes] must be a table of size tables")
    tables = {k: v for k, v in data.items() if k not in ("recipe", "sizes")}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise RecipeError(f"{path}: top-level key '{name}' must be a table like [{name}]")

    if "base" in meta:  # inherit another recipe, then override with this file's tables
        base_path = _locate(str(meta["base"]))
        if base_path.resolve() in seen:
            raise RecipeError(f"{path}: [recipe] base '{meta['base']}' includes itself")
        base = _resolve(_read_toml(base_path), base_path, size, seen + (base_path.resolve(),))
        tables = _merge_tables(base.tables, tables, where=str(path))
        merged_meta = {**base.meta, **meta}
        merged_meta.pop("base", None)
        meta = merged_meta
        base_sizes = set(base.sizes)
    else:
        base_sizes = {"paper"}

    known_sizes = base_sizes | {"paper"} | set(sizes)
    if size not in known_sizes:
        raise RecipeError(
            f"{path}: no size '{size}'; this recipe defines {', '.join(sorted(known_sizes))}"
        )
    for variant, variant_tables in sizes.items():  # check every size, not only the one asked for
        if not isinstance(variant_tables, dict):
            raise RecipeError(f"{path}: [sizes.{variant}] must be a table of part tables")
        for name, table in variant_tables.items():
            if name not in tables:
                raise RecipeError(
                    f"{path}: [sizes.{variant}.{name}] overrides a table that the recipe does not have"
                )
            if not isinstance(table, dict):
                raise RecipeError(f"{path}: [sizes.{variant}] key '{name}' must be a table")
    tables = _merge_tables(tables, sizes.get(size, {}), where=f"{path} [sizes.{size}]")
    if "name" in meta and not (
        isinstance(meta["name"], str)
        and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", meta["name"])
        and ".." not in meta["name"]
    ):
        raise RecipeError(
            f"{path}: [recipe] name {meta['name']!r} is not a plain name (letters, digits, _ - .)"
        )
    name = str(meta.get("name") or path.stem)
    return Recipe(name, size, path, dict(meta), tables, tuple(sorted(known_sizes)))


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override '{key}': '{part}' is not a table")
        last = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = _merge_tables(node[last], value, where="overrides")
        else:
            node[last] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else value
    return nested


def _merge_tables(
    base: Mapping[str, Any], over: Mapping[str, Any], *, where: str
) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping):
            old = out.get(key)
            replaces = not isinstance(old, dict) or (
                "type" in value and value.get("type") != old.get("type")
            )
            out[key] = (
                copy.deepcopy(dict(value)) if replaces else _merge_tables(old, value, where=where)
            )
        else:
            out[key] = copy.deepcopy(value)
    return out
