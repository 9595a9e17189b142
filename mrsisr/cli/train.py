"""`mrsisr train`: train any recipe on the phantom cohort or your own data."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mrsisr.cli.zoo import (
    CompileOption,
    PrecisionOption,
    SetOption,
    SizeOption,
    parse_overrides,
)
from mrsisr.devices import resolve_device
from mrsisr.errors import MrsisrError

console = Console()


def train_cmd(
    name: Annotated[
        str, typer.Argument(help="Recipe name from the zoo, or a path to a TOML file.")
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", help="Run folder (checkpoints, weights, card).")
    ],
    data: Annotated[
        str, typer.Option(help="'phantom' or a folder of subject folders.")
    ] = "phantom",
    fold: Annotated[
        int, typer.Option(min=0, max=4, help="Fold: test = group K, validation = group K+1.")
    ] = 0,
    size: SizeOption = "small",
    steps: Annotated[int, typer.Option(min=1, help="Optimiser steps per stage.")] = 1000,
    batch: Annotated[
        int,
        typer.Option(
            "--batch",
            min=1,
            help="Images per network evaluation, as in every command: maps per optimiser step "
            "(per process).",
        ),
    ] = 8,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Learning rate for every stage (default: each stage's paper value); a critic "
            "with a rate of its own (a GAN's initializer.critic_lr) keeps it."
        ),
    ] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option(
            help="Learning-rate schedule of each stage: constant, linear (decay to zero over "
            "--steps) or cosine (default: the recipe's [train] value, else constant)."
        ),
    ] = None,
    warmup_steps: Annotated[
        int | None,
        typer.Option(min=0, help="Linear warm-up steps (default: the recipe's, else 0)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")
    ] = "auto",
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Steps between checkpoints.")] = 250,
    validate_every: Annotated[
        int, typer.Option(min=1, help="Steps between validation passes.")
    ] = 250,
    val_batches: Annotated[int, typer.Option(min=0, help="Validation batches per pass.")] = 8,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    reuse: Annotated[
        list[str] | None,
        typer.Option(
            help="STAGE=PATH[#PART]: load that stage's weights from a run or weights file instead of "
            "training it; #PART names the part there if it differs (repeatable)."
        ),
    ] = None,
    init: Annotated[
        list[str] | None,
        typer.Option(
            help="STAGE=PATH[#PART]: start that stage from these weights and train it (fine-tuning; "
            "repeatable)."
        ),
    ] = None,
    init_adapt: Annotated[
        bool,
        typer.Option(
            "--init-adapt",
            help="Let --init weights come from a network that differs in its inputs: the ddpm "
            "UNet into one with the s-embedding, a UNet with the mask and MRIs into one without "
            "(new entries start at zero, dropped input channels are left out).",
        ),
    ] = False,
    precision: PrecisionOption = "fp32",
    compile_: CompileOption = None,
    set_: SetOption = None,
) -> None:
    """Train every part of a recipe, in order, with EMA, checkpoints and validation.

    Works the same on one CPU, one GPU, or several GPUs under `torchrun --nproc_per_node=N`.
    """
    from mrsisr.train.engine import TrainConfig
    from mrsisr.train.run import train_recipe

    device = resolve_device(device)
    reuse_map, init_map = _stage_paths(reuse, "--reuse"), _stage_paths(init, "--init")
    config = TrainConfig(
        steps=steps,
        batch_size=batch,
        seed=seed,
        lr=lr,
        lr_schedule=lr_schedule,
        warmup_steps=warmup_steps,
        checkpoint_every=checkpoint_every,
        validate_every=validate_every,
        val_batches=val_batches,
        device=device,
        precision=precision,
        compile=compile_,
        init_adapt=init_adapt,
    )
    results = train_recipe(
        name,
        out=out,
        data=data,
        fold=fold,
        size=size,
        config=config,
        overrides=parse_overrides(set_),
        reuse=reuse_map,
        init=init_map,
        resume=resume,
    )
    table = Table(title=f"trained {name} ({size}) -> {out}", title_justify="left", show_edge=False)
    for col in ("stage", "steps", "final loss", "best val loss", "time"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for r in results:
        table.add_row(
            r.name,
            "reused" if r.reused_from else str(r.steps),
            "" if r.final_loss is None else f"{r.final_loss:.4f}",
            "" if r.best_val_loss is None else f"{r.best_val_loss:.4f}",
            f"{r.wall_time_s:.0f} s",
        )
    console.print(table)


def _stage_paths(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        stage, sep, path = item.partition("=")
        if not sep or not stage or not path:
            raise MrsisrError(f"{flag} '{item}': expected STAGE=PATH, e.g. denoiser=runs/unet")
        out[stage] = path
    return out


def register(app: typer.Typer) -> None:
    """Attach `mrsisr train` to the main app.

    Args:
        app: The root typer app.
    """
    app.command("train")(train_cmd)
