"""`mrsisr bench` and `mrsisr study`: the side-by-side benchmark (Table 1) and the paper's studies."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mrsisr.cli.zoo import (
    CompileOption,
    ConsistencyOption,
    PrecisionOption,
    SetOption,
    SizeOption,
    parse_overrides,
    with_consistency,
)
from mrsisr.devices import resolve_device
from mrsisr.errors import MrsisrError
from mrsisr.eval.bench import DEFAULT_LIMIT, DEFAULT_SLOW_LIMIT

console = Console()
if not console.is_terminal and "COLUMNS" not in os.environ:
    console = Console(width=150)  # a log file: keep each table row on one line


def parse_list(text: str, what: str, cast: type = str) -> list:
    """Split a comma-separated option value, with a clear error for bad items.

    Args:
        text: E.g. `ftddm,tdpm,ddpm` or `8,4,2`.
        what: The option's name, for messages.
        cast: Type of each item.

    Returns:
        The items.

    Raises:
        MrsisrError: If an item is empty or cannot be converted.
    """
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise MrsisrError(f"{what}: empty item in '{text}'; separate items with commas")
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise MrsisrError(f"{what}: '{text}' is not a list of {cast.__name__}") from None


def parse_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """Parse repeated `NAME=VALUE` options.

    Args:
        items: The option's values.
        what: The option's name, for messages.

    Returns:
        Name → value.

    Raises:
        MrsisrError: If an item has no `=`.
    """
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise MrsisrError(f"{what} '{item}': expected NAME=PATH, e.g. ftddm=runs/ftddm")
        out[name] = value
    return out


def _fmt(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _p(p: float | None) -> str:
    return "" if p is None else f"{p:.1e}"


def bench_cmd(
    models: Annotated[
        str,
        typer.Option(
            help="Comma-separated recipes; the first is the Wilcoxon reference. NAME+dc adds "
            "k-space data consistency, NAME+dcp the same with the acquisition's phase known."
        ),
    ] = "ftddm,tdpm,ddpm",
    scales: Annotated[str, typer.Option(help="Comma-separated upscaling factors.")] = "8,4,2",
    data: Annotated[
        str, typer.Option(help="'phantom' or a folder of subject folders.")
    ] = "phantom",
    fold: Annotated[
        int, typer.Option(min=0, max=4, help="Fold whose test subjects are scored.")
    ] = 0,
    limit: Annotated[
        int,
        typer.Option(min=0, help="Maps per scale (a seeded subset of the test maps); 0 = all."),
    ] = DEFAULT_LIMIT,
    slow_limit: Annotated[
        int,
        typer.Option(
            min=0,
            help="Maps per scale for 1000-NFE models (DDPM): the first of the same maps; 0 = --limit.",
        ),
    ] = DEFAULT_SLOW_LIMIT,
    size: SizeOption = "small",
    seed: Annotated[int, typer.Option(help="Seed of the map choice and the sampling noise.")] = 0,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")
    ] = "auto",
    out: Annotated[
        str, typer.Option("--out", "-o", help="Folder for results.json, results.csv, grid.png.")
    ] = "bench-results",
    batch: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Images per network evaluation, as in every command: maps per sampling call; "
            "0 = all maps of a scale at once. Default: 16 on a CPU (faster per image there), "
            "64 on a GPU.",
            show_default=False,
        ),
    ] = None,
    weights: Annotated[
        list[str] | None,
        typer.Option(help="NAME=PATH: weights file or run folder for a model (repeatable)."),
    ] = None,
    untrained: Annotated[
        bool,
        typer.Option(
            "--untrained", help="Allow models without weights (random weights: timings only)."
        ),
    ] = False,
    uq_samples: Annotated[
        int,
        typer.Option(
            "--samples",
            "--uq-samples",
            min=0,
            help="Samples of the first model for the figure's std map (the scored draw and N-1 more).",
        ),
    ] = 4,
    set_: SetOption = None,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="Channels-last weights (default: on for CPU, where benchmarks/perf.py measured "
            "it faster; the results agree to rounding).",
        ),
    ] = None,
    consistency: ConsistencyOption = "none",
    precision: PrecisionOption = "fp32",
    compile_: CompileOption = None,
) -> None:
    """Benchmark models side by side on the same maps: NFE, time, parameters, NRMSE/PSNR/SSIM.

    Prints the paper's Table 1 for the chosen models (mean ± std over the maps, paired Wilcoxon
    p-values against the first model) and writes results.json, results.csv and a figure.
    Under `torchrun --nproc_per_node=N` the maps are sharded over the processes.
    """
    from mrsisr.eval.bench import BENCH_MARKER, run_bench
    from mrsisr.outputs import prepare_out
    from mrsisr.runtime import check_runtime

    names = with_consistency(parse_list(models, "--models"), consistency)
    scale_list = parse_list(scales, "--scales", int)
    weight_map = parse_pairs(weights, "--weights")
    device = resolve_device(device)
    check_runtime(precision, compile_)
    prepare_out(out, marker=BENCH_MARKER, command="mrsisr bench")  # before any work
    dist = _init_distributed(device)
    result = run_bench(
        names,
        scales=scale_list,
        data=data,
        fold=fold,
        limit=limit or None,
        slow_limit=slow_limit or None,
        size=size,
        seed=seed,
        device=device,
        batch=_batch(device, batch),
        weights=weight_map,
        untrained=untrained,
        overrides=parse_overrides(set_),
        uq_samples=uq_samples,
        channels_last=_channels_last(device, channels_last),
        precision=precision,
        compile=compile_,
    )
    if dist:
        import torch.distributed

        rank = torch.distributed.get_rank()
        torch.distributed.destroy_process_group()
        if rank != 0:
            return
    console.print(bench_table(result))
    written = result.save(out)
    console.print("wrote " + ", ".join(str(p) for p in written))


def bench_table(result) -> Table:  # noqa: ANN001
    """Render a bench result as a rich table, one line per model and scale.

    Args:
        result: A [`BenchResult`][mrsisr.eval.bench.BenchResult].

    Returns:
        The table.
    """
    cfg = result.config
    n = max((r.n_maps for r in result.rows), default=0)
    fewer = sorted({f"{r.model} on {r.n_maps}" for r in result.rows if r.n_maps < n})
    title = (
        f"mrsisr bench: {cfg['size']} size, {cfg['data']} fold {cfg['fold']}, {n} maps per scale"
        + (f" ({', '.join(fewer)} maps: its p-values pair on those)" if fewer else "")
        + f", {result.machine}"
    )
    if cfg["untrained"]:
        title += f" [red]UNTRAINED (timings only): {', '.join(cfg['untrained'])}[/red]"
    table = Table(title=title, title_justify="left")
    first = result.rows[0].model if result.rows else ""
    cols = ("model", "scale", "NFE", "s/slice", "params", "NRMSE", "PSNR", "SSIM")
    for col in (*cols, f"p(SSIM) vs {first}", "p(SSIM) vs LR"):
        table.add_column(col, justify="left" if col == "model" else "right")
    last_scale = None
    for r in result.rows:
        if last_scale is not None and r.scale != last_scale:
            table.add_section()
        last_scale = r.scale
        table.add_row(
            r.model,
            f"×{r.scale}",
            str(r.nfe),
            f"{r.sec_per_slice:.3f}" if r.nfe else "",
            f"{r.params / 1e6:.2f}M" if r.params else "",
            _fmt(r.nrmse_mean, r.nrmse_std, 3),
            _fmt(r.psnr_mean, r.psnr_std, 2),
            _fmt(r.ssim_mean, r.ssim_std, 3),
            _p(r.p_ssim),
            _p(r.p_ssim_lr),
        )
    return table


def study_cmd(
    name: Annotated[
        str,
        typer.Argument(
            help="Study: truncation, solver, scale, sharpness, ablation or consistency."
        ),
    ],
    size: SizeOption = "small",
    data: Annotated[
        str, typer.Option(help="'phantom' or a folder of subject folders.")
    ] = "phantom",
    fold: Annotated[
        int, typer.Option(min=0, max=4, help="Fold whose test subjects are scored.")
    ] = 0,
    limit: Annotated[
        int, typer.Option(min=0, help="Maps per scale (a seeded subset); 0 = all.")
    ] = 4,
    scales: Annotated[
        str, typer.Option(help="Comma-separated actual upscaling factors.")
    ] = "8,4,2",
    steps: Annotated[
        str, typer.Option(help="Comma-separated step counts (truncation study).")
    ] = "100,50,20",
    seed: Annotated[int, typer.Option(help="Seed of the map choice and the sampling noise.")] = 0,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")
    ] = "auto",
    out: Annotated[
        str, typer.Option("--out", "-o", help="Folder for NAME.json, NAME.csv and NAME.png.")
    ] = "study-results",
    weights: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PATH: weights file or run folder for a recipe, or for an ablation "
            "variant (repeatable)."
        ),
    ] = None,
    untrained: Annotated[
        bool, typer.Option("--untrained", help="Random weights where none exist (timings only).")
    ] = False,
    consistency: ConsistencyOption = "none",
    slow_limit: Annotated[
        int,
        typer.Option(
            min=1,
            help="Maps per scale for 1000-NFE rows (the truncation study's DDPM-1000, the "
            "ablation's diffusion_only, DDPM in the consistency study): the first of the same maps.",
        ),
    ] = 20,
    skip_slow: Annotated[
        bool, typer.Option("--skip-slow", help="Leave the 1000-NFE rows out (a quick mode).")
    ] = False,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated recipes, for studies that compare a list (consistency)."
        ),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Maps per sampling call, as in bench; 0 = all maps of a scale at once. Default: "
            "16 on a CPU, 64 on a GPU. Part of the study's identity: the draws depend on it.",
            show_default=False,
        ),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="Channels-last weights (default: on for CPU, as in bench; the results agree "
            "to rounding).",
        ),
    ] = None,
) -> None:
    """Run one of the paper's studies and write its table (JSON, CSV) and figure (PNG).

    truncation: quality vs NFE for respace, DPM-Solver++, TDPM, FTDDM, DDPM-1000 as reference
    (Fig. 5); solver: FTDDM with DPM-Solver++ at each truncation (Table 4); scale: conditioned vs
    actual upscaling factor (Fig. 6); sharpness: the tau_d sweep with PSNR, SSIM and LPIPS
    (Fig. 7); ablation: flow only, diffusion only, both (Table 2) and FTDDM without mask, MRIs
    or guide loss (Table 3); consistency: every model with and without k-space data consistency.
    """
    from mrsisr.eval.studies import STUDY_MARKER, StudyConfig
    from mrsisr.outputs import prepare_out
    from mrsisr.registries import STUDIES

    study = STUDIES.get(name)
    with_consistency([], consistency, allow_both=False)  # validates the value
    device = resolve_device(device)
    prepare_out(out, marker=STUDY_MARKER, command="mrsisr study")  # before any work
    cfg = StudyConfig(
        size=size,
        data=data,
        fold=fold,
        limit=limit or None,
        scales=parse_list(scales, "--scales", int),
        seed=seed,
        device=device,
        weights=parse_pairs(weights, "--weights"),
        untrained=untrained,
        steps=parse_list(steps, "--steps", int),
        consistency=consistency,
        slow_limit=slow_limit,
        skip_slow=skip_slow,
        models=parse_list(models, "--models") if models else None,
        batch=_batch(device, batch),
        channels_last=_channels_last(device, channels_last),
        resume_dir=out,  # rows scored by an interrupted run with the same settings are kept
    )
    result = study(cfg)
    console.print(study_table(result))
    written = result.save(out)
    console.print("wrote " + ", ".join(str(p) for p in written))


def study_table(result) -> Table:  # noqa: ANN001
    """Render a study result as a rich table.

    Args:
        result: A [`StudyResult`][mrsisr.eval.studies.base.StudyResult].

    Returns:
        The table.
    """
    rows = result.rows
    n = rows[0]["n_maps"] if rows else 0
    table = Table(
        title=f"mrsisr study {result.name}: {result.config['size']} size, {n} maps per scale, "
        f"{result.machine}",
        title_justify="left",
    )
    lpips = [
        k for k in ("lpips_alex", "lpips_vgg") if rows and rows[0].get(f"{k}_mean") is not None
    ]
    cols = ["variant", "scale", "NFE", "s/slice", "NRMSE", "PSNR", "SSIM"]
    cols += [k.replace("lpips_", "LPIPS ") for k in lpips] + ["p(SSIM)"]
    for col in cols:
        table.add_column(col, justify="left" if col == "variant" else "right")
    last = None
    for r in rows:
        if last is not None and r["scale"] != last:
            table.add_section()
        last = r["scale"]
        table.add_row(
            r["variant"],
            f"×{r['scale']}",
            str(r["nfe"]),
            f"{r['sec_per_slice']:.3f}" if r["nfe"] else "",
            _fmt(r["nrmse_mean"], r["nrmse_std"], 3),
            _fmt(r["psnr_mean"], r["psnr_std"], 2),
            _fmt(r["ssim_mean"], r["ssim_std"], 3),
            *[_fmt(r[f"{k}_mean"], r[f"{k}_std"], 3) for k in lpips],
            _p(r["p_ssim"]),
        )
    return table


def _batch(device: str, batch: int | None) -> int | None:
    """`--batch` as `run_bench` and `StudyConfig` take it: the device's default when not given
    (16 on a CPU, 64 on a GPU), `None` (all maps of a scale in one call) for 0."""
    from mrsisr.sr import default_batch

    return (default_batch(device) if batch is None else batch) or None


def _channels_last(device: str, flag: bool | None) -> bool:
    """`--channels-last/--no-channels-last`, on by default on a CPU (faster there)."""
    return flag if flag is not None else device == "cpu"


def _init_distributed(device: str) -> bool:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def register(app: typer.Typer) -> None:
    """Add `bench` and `study` to the application.

    Args:
        app: The root typer app.
    """
    app.command("bench")(bench_cmd)
    app.command("study")(study_cmd)
