"""Zoo commands: `mrsisr list`, `mrsisr recipe show`, `mrsisr recipe check`, `mrsisr info`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import tomllib
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mrsisr.errors import MrsisrError, RecipeError

console = Console()

SizeOption = Annotated[
    str, typer.Option("--size", "-s", help="Size variant: paper, small or tiny.")
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        help="fp32, bf16 or fp16: network evaluations under autocast at that precision "
        "(fp16 training uses a gradient scaler). bf16 pays off on GPUs and recent CPUs.",
    ),
]
CompileOption = Annotated[
    str | None,
    typer.Option(
        "--compile",
        help="torch.compile the networks with this backend: inductor (generated kernels; the "
        "first calls compile, minutes on CPU), or aot_eager / eager (tracing only).",
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a recipe key, e.g. --set sampler.type=dpm_solver_pp --set sampler.steps=10 "
        "(repeatable; values are TOML literals, bare words are strings).",
    ),
]


ConsistencyOption = Annotated[
    str,
    typer.Option(
        "--consistency",
        help="k-space data consistency: none (as published), kspace (keep the measured "
        "k-space block; bench rows get a +dc suffix) or both (bench only: each model twice).",
    ),
]


def with_consistency(names: list[str], mode: str, *, allow_both: bool = True) -> list[str]:
    """Apply `--consistency` to a list of bench model names.

    Args:
        names: Model names.
        mode: `none`, `kspace` or `both`.
        allow_both: Whether `both` is accepted.

    Returns:
        The names, with `+dc` variants as asked.

    Raises:
        MrsisrError: For another mode.
    """
    modes = ("none", "kspace", "both") if allow_both else ("none", "kspace")
    if mode not in modes:
        raise MrsisrError(f"--consistency {mode}: use {', '.join(modes)}")
    if mode == "none":
        return names
    # a name with a suffix (`+dc`, `+dcp`) is already projected: it is listed once, as it is
    dc = [n if "+" in n else f"{n}+dc" for n in names]
    if mode == "kspace":
        return dc
    return [x for n, d in zip(names, dc) for x in ((n,) if n == d else (n, d))]


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """Parse `table.key=value` strings into a dotted override mapping.

    Args:
        items: Strings such as `sampler.steps=10` or `sampler.type=respace`.

    Returns:
        `{"sampler.steps": 10, ...}` with values parsed as TOML literals when possible.

    Raises:
        RecipeError: For an item without `=` or without a table name.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or "." not in key:
            raise RecipeError(f"--set '{item}': expected TABLE.KEY=VALUE, e.g. sampler.steps=10")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key] = value
    return out


def _role(role: str) -> str:
    from mrsisr.registries import ROLES

    if role in ROLES:
        return role
    if f"{role}s" in ROLES:
        return f"{role}s"
    if role == "conditionings":
        return "conditioning"
    raise MrsisrError(f"unknown role '{role}'; choose one of: {', '.join(ROLES)}")


def list_cmd(
    role: Annotated[
        str | None,
        typer.Argument(
            help="Role to list (initializers, backbones, samplers, conditioning, "
            "schedules, pipelines, recipes); all when omitted."
        ),
    ] = None,
) -> None:
    """List the registered components, with one-line descriptions and their origin."""
    from mrsisr.registries import ROLES

    roles = [_role(role)] if role else list(ROLES)
    problems = []
    for name in roles:
        reg = ROLES[name]
        table = Table(title=name, title_justify="left", show_edge=False, expand=False)
        table.add_column("name", style="bold cyan", no_wrap=True)
        table.add_column("description")
        table.add_column("from", style="dim", no_wrap=True)
        if name == "recipes":
            table.add_column("shipped weights", no_wrap=True)
        for entry in reg.entries():
            origin = f"plugin: {entry.plugin}" if entry.plugin else "built-in"
            row = [escape(entry.name), escape(entry.description), escape(origin)]
            if name == "recipes":
                row.append(", ".join(_shipped_sizes(entry.name)) or "-")
            table.add_row(*row)
        console.print(table)
        console.print()
        problems.extend(reg.problems)
    for p in problems:
        console.print(
            f"[red]skipped plugin[/red] {escape(p.name)} ({escape(p.distribution)}): {escape(p.message)}"
        )


def _shipped_sizes(recipe: str) -> list[str]:
    from mrsisr.recipes import SIZES
    from mrsisr.weights import weights_path

    return [size for size in SIZES if weights_path(recipe, size).is_file()]


recipe_app = typer.Typer(help="Read, check and print recipes.", no_args_is_help=True)


@recipe_app.command("show")
def recipe_show(
    name: Annotated[
        str, typer.Argument(help="Recipe name from the zoo, or a path to a TOML file.")
    ],
    size: SizeOption = "small",
    set_: SetOption = None,
) -> None:
    """Print the fully resolved recipe (size and overrides applied) as TOML."""
    from mrsisr.recipes import load_recipe

    recipe = load_recipe(name, size=size, overrides=parse_overrides(set_))
    typer.echo(recipe.to_toml(), nl=False)


@recipe_app.command("check")
def recipe_check(
    path: Annotated[str, typer.Argument(help="Recipe name or TOML file to validate.")],
) -> None:
    """Validate a recipe at every size it defines; exit 2 with the problem if it is invalid."""
    from mrsisr.recipes import load_recipe

    first = load_recipe(path)
    for size in first.sizes:
        load_recipe(path, size=size)
    typer.echo(f"{first.where}: ok ({', '.join(first.sizes)})")


def recipe_info(
    name: str, size: str = "paper", overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Build a recipe and report its parts, parameter counts and NFE.

    Args:
        name: Recipe name or TOML path.
        size: Size variant.
        overrides: Recipe overrides (dotted or nested).

    Returns:
        `{"name", "size", "params": {"total", <part>: n}, "uncounted": [...], "nfe"}`.
    """

    from mrsisr.pipelines import count_parameters, pipeline_parts
    from mrsisr.recipes import load_recipe

    recipe = load_recipe(name, size=size, overrides=overrides)
    pipeline = recipe.build()
    parts = pipeline_parts(pipeline)
    return {
        "name": recipe.name,
        "size": recipe.size,
        "params": count_parameters(pipeline),
        "uncounted": [k for k, (_, counted) in parts.items() if not counted],
        "nfe": int(pipeline.nfe),
    }


def info_cmd(
    name: Annotated[
        str, typer.Argument(help="Recipe name from the zoo, or a path to a TOML file.")
    ],
    size: SizeOption = "small",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    set_: SetOption = None,
) -> None:
    """Show a recipe's parts, parameter counts (as the paper's Table 1 counts them) and NFE."""
    info = recipe_info(name, size, parse_overrides(set_))
    if as_json:
        typer.echo(json.dumps({k: info[k] for k in ("name", "size", "params", "nfe")}))
        return
    table = Table(title=f"{info['name']} ({info['size']})", title_justify="left", show_edge=False)
    table.add_column("part", style="bold")
    table.add_column("parameters", justify="right")
    table.add_column("", style="dim")
    for part, n in info["params"].items():
        if part == "total":
            continue
        note = "not in total (as in Table 1)" if part in info["uncounted"] else ""
        table.add_row(part, f"{n:,}", note)
    table.add_row("total", f"{info['params']['total']:,}", f"{info['params']['total'] / 1e6:.1f}M")
    console.print(table)
    console.print(f"NFE per sample: {info['nfe']}")


def register(app: typer.Typer) -> None:
    """Attach the zoo commands to the main app.

    Args:
        app: The root typer app.
    """
    app.command("list")(list_cmd)
    app.command("info")(info_cmd)
    app.add_typer(recipe_app, name="recipe")
