"""`mrsisr sr`: super-resolve a subject's NIfTI volumes, with uncertainty maps."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from mrsisr.cli.zoo import (
    CompileOption,
    ConsistencyOption,
    PrecisionOption,
    SetOption,
    parse_overrides,
    with_consistency,
)
from mrsisr.devices import resolve_device
from mrsisr.errors import MrsisrError

console = Console(stderr=True)


def sr_cmd(
    name: Annotated[
        str, typer.Argument(help="Recipe name from the zoo, or a path to a TOML file.")
    ],
    input: Annotated[  # noqa: A002
        str,
        typer.Option(
            "--input",
            "-i",
            help="Subject folder in the NIfTI layout, or a dataset folder of subject folders "
            "(then --out gets one folder per subject).",
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: new or empty; with --overwrite also an earlier `mrsisr sr` output.",
        ),
    ],
    scale: Annotated[
        float | None,
        typer.Option(
            help="Upscaling factor: the maps' acquired matrix is 64 / scale. Inferred from maps "
            "given at their acquired matrix (e.g. 16×16 → 4); required for maps on the 64×64 grid."
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            min=1,
            help="Samples per slice. The output is their mean, and <met>_std maps their spread "
            "(the uncertainty); time grows linearly with it. 1 is fastest but keeps one draw's "
            "sampling noise; --tau-d 0 makes an ancestral chain nearly deterministic instead.",
        ),
    ] = 4,
    tau_d: Annotated[
        float | None, typer.Option("--tau-d", help="Step-noise temperature (sharpness).")
    ] = None,
    tau_f: Annotated[float | None, typer.Option("--tau-f", help="Flow prior temperature.")] = None,
    steps: Annotated[
        int | None, typer.Option(min=1, help="Sampler steps (an ancestral chain is respaced).")
    ] = None,
    metabolites: Annotated[
        str | None, typer.Option(help="Comma-separated metabolites (default: all the subject has).")
    ] = None,
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            "-s",
            help="Size variant: paper, small or tiny (default: the --weights card's, else small).",
        ),
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Weights file or run folder instead of the shipped ones.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampling noise.")] = 0,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")
    ] = "auto",
    batch: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Images per network evaluation (maps × samples; bounds memory), as in every "
            "command. Default: 16 on a CPU (faster per image there), 64 on a GPU.",
            show_default=False,
        ),
    ] = None,
    consistency: ConsistencyOption = "none",
    set_: SetOption = None,
    precision: PrecisionOption = "fp32",
    compile_: CompileOption = None,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="Channels-last weights (default: on for CPU, where benchmarks/perf.py measured "
            "it faster; the results agree to rounding).",
        ),
    ] = None,
    preview: Annotated[
        str | None,
        typer.Option(
            help="Also write a PNG: per metabolite the LR input, the SR mean, the std and the "
            "FLAIR of one slice, with colour bars (a dataset folder: one file per subject, "
            "FILE-<subject>.png)."
        ),
    ] = None,
    preview_slice: Annotated[
        int | None,
        typer.Option(min=0, help="Slice of the preview (default: the one with the largest mask)."),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an earlier output of `mrsisr sr` (a folder with sr.json); never the "
            "input, the current folder or a folder above them.",
        ),
    ] = False,
) -> None:
    """Super-resolve every slice and metabolite of one subject; write NIfTI with the input's affine.

    Writes `<met>.nii.gz` (the super-resolved map; the mean of the samples), `<met>_std.nii.gz`
    (the per-voxel standard deviation: uncertainty, when --samples > 1), `<met>_lr.nii.gz` (the
    low-resolution input the model saw) and `sr.json`.
    """
    params = dict(locals())  # the options as parsed, for the provenance record
    import time
    from pathlib import Path

    import mrsisr
    from mrsisr.cli.bench import parse_list
    from mrsisr.data import check_subject_dir, load_subject
    from mrsisr.outputs import prepare_out
    from mrsisr.runtime import accelerate, check_runtime
    from mrsisr.sr import (
        check_scale,
        default_batch,
        estimate_seconds,
        resolve_scale,
        sampling_overrides,
        save_preview,
        super_resolve,
        uses_mri,
        write_sr,
    )
    from mrsisr.weights import file_sha256, weights_path
    from mrsisr.zoo import load

    if scale is not None:
        check_scale(scale)
    if size is None:  # a run folder or weights file says which size it is
        size = _card_size(weights) or "small"
    with_consistency([], consistency, allow_both=False)  # validates the value
    check_runtime(precision, compile_)
    device = resolve_device(device)
    from mrsisr.data.layout import is_subject_dir, subject_dirs, subject_notes

    if not Path(input).is_dir():
        raise MrsisrError(f"--input {input}: subject folder not found")
    # one subject, or a dataset folder: one output folder per subject under --out
    batch_mode = not is_subject_dir(input) and bool(subject_dirs(input))
    subjects = subject_dirs(input) if batch_mode else [Path(input)]
    # before any work: may these folders be written (never the input, the current folder, ...)?
    if batch_mode:
        prepare_out(
            out, marker=BATCH_MARKER, overwrite=overwrite, inputs=[input], command="mrsisr sr"
        )
        for sub in subjects:
            prepare_out(Path(out) / sub.name, marker="sr.json", overwrite=overwrite,
                        inputs=[input], command="mrsisr sr")  # fmt: skip
    else:
        prepare_out(out, marker="sr.json", overwrite=overwrite, inputs=[input], command="mrsisr sr")
    if preview is not None:
        if not preview.lower().endswith(".png"):
            raise MrsisrError(f"--preview {preview}: give a .png file name")
        if not Path(preview).absolute().parent.is_dir():
            raise MrsisrError(f"--preview {preview}: its folder does not exist")
    overrides = parse_overrides(set_)  # dotted keys; the sampling knobs apply on top of them
    knobs = sampling_overrides(
        name, size, steps=steps, tau_d=tau_d, tau_f=tau_f, overrides=overrides
    )
    overrides |= {f"{part}.{k}": v for part, values in knobs.items() for k, v in values.items()}
    if consistency == "kspace":
        overrides["consistency"] = {"type": "kspace"}
    pipeline = load(name, size=size, weights=weights, overrides=overrides, device=device)
    if channels_last if channels_last is not None else device == "cpu":
        import torch

        pipeline.to(memory_format=torch.channels_last)
    pipeline = accelerate(pipeline, device, precision, compile_)
    need_mri = uses_mri(pipeline)
    problems = []
    for sub in subjects:
        for line in subject_notes(sub):
            print(f"note: {' '.join(line.split())}", file=sys.stderr)
        problems += check_subject_dir(sub, require_mri=need_mri)
    if problems:
        for line in problems:
            print(f"problem: {' '.join(line.split())}", file=sys.stderr)
        print(
            f"error: {input}: {len(problems)} problem(s); run `mrsisr data check` after fixing",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    loaded = [load_subject(sub, require_mri=need_mri) for sub in subjects]
    for s in loaded:
        for line in s.notes:
            print(f"note: {' '.join(line.split())}", file=sys.stderr)
    if preview is not None and preview_slice is not None:
        for s in loaded:
            if preview_slice >= s.n_slices:
                raise MrsisrError(
                    f"--preview-slice {preview_slice}: {s.subject} has slices 0-{s.n_slices - 1}"
                )
    scales = [resolve_scale(scale, s.native_size, str(sub)) for s, sub in zip(loaded, subjects)]
    mets = parse_list(metabolites, "--metabolites") if metabolites else None
    from mrsisr.recipes import load_recipe

    recipe_name = load_recipe(name, size=size).name
    source = Path(weights) if weights else weights_path(recipe_name, size)
    files = [source / "weights.safetensors"] if source.is_dir() else [source]
    digests = {str(f): file_sha256(f) for f in files if f.is_file()}
    if batch_mode:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / BATCH_MARKER).write_text(f"mrsisr sr outputs of {Path(input).resolve()}\n")
    n_maps = sum(
        int((s.masks[m].reshape(s.n_slices, -1).any(1)).sum())
        for s in loaded
        for m in (mets or s.metabolites)
        if m in s.masks
    )
    batch = default_batch(device) if batch is None else batch
    guess = estimate_seconds(pipeline, n_maps, samples, batch, device)
    if guess is not None and guess > 300:
        console.print(
            f"note: about {guess / 60:.0f} min for {n_maps} maps × {samples} samples × NFE "
            f"{pipeline.nfe} on {device}; --samples, --steps or a GPU make it shorter"
        )
    for subject, sub_dir, sub_scale in zip(loaded, subjects, scales, strict=True):
        if subject.native_size:
            n = subject.native_size
            console.print(
                f"{subject.subject}: {n}×{n} maps, zero-filled to 64×64 in k-space: ×{sub_scale:g}"
            )
        started = time.perf_counter()
        with _nfe_bar() as bar:
            task = bar.add_task(subject.subject, total=None)

            def tick(done: int, total: int, task: object = task, bar: object = bar) -> None:
                bar.update(task, completed=done, total=total)

            result = super_resolve(
                pipeline,
                subject,
                sub_scale,
                samples=samples,
                metabolites=mets,
                batch=batch,
                seed=seed,
                device=device,
                progress=tick,
            )
        result.info.update(
            mrsisr_version=mrsisr.__version__,
            model=name,
            recipe=recipe_name,
            size=size,
            weights=weights or "shipped",
            weights_sha256=digests,
            overrides=overrides,
            seed=seed,
            device=str(device),
            dtype=_dtype(pipeline),
            batch=batch,
            command=_command_line(params),
            inputs=[str(sub_dir.resolve())],
            wall_time_s=round(time.perf_counter() - started, 3),
        )
        target = Path(out) / sub_dir.name if batch_mode else Path(out)
        written = write_sr(result, target, overwrite=overwrite, inputs=[input])
        if preview is not None:
            fig = Path(preview)
            if batch_mode:
                fig = fig.with_name(f"{fig.stem}-{sub_dir.name}{fig.suffix}")
            save_preview(result, subject, fig, slice_index=preview_slice)
            written.append(fig)
        console.print(
            f"{result.subject}: {result.info['maps']} maps at ×{sub_scale:g}, {samples} "
            f"sample(s) each, NFE {result.info['nfe']}; wrote {len(written)} files to {target}"
        )
        if consistency == "kspace":
            known = result.info["measured"]
            rest = [m for m in result.mean if m not in known]
            parts = []
            if known:
                parts.append(f"the acquired k-space block is the data term for {', '.join(known)}")
            if rest:
                parts.append(
                    f"the block is estimated from the magnitude for {', '.join(rest)} (complex "
                    "maps at their acquired matrix give it as acquired)"
                )
            console.print("data consistency: " + "; ".join(parts))


BATCH_MARKER = ".mrsisr-sr"
"""Marker file of an `mrsisr sr` output folder holding one folder per subject."""


def _card_size(weights: str | None) -> str | None:
    from pathlib import Path

    from mrsisr.weights import read_card

    if not weights:
        return None
    path = Path(weights)
    card = read_card(path / "card.json" if path.is_dir() else path.with_suffix(".json"))
    size = (card or {}).get("size")
    return size if isinstance(size, str) else None


def _command_line(params: dict) -> str:
    """The command as run, rebuilt from the parsed options (every value, defaults included)."""
    import shlex

    words = ["mrsisr", "sr", str(params["name"])]
    for key, value in params.items():
        if key == "channels_last" and value is False:
            words.append("--no-channels-last")
        if key == "name" or value is None or value is False:
            continue
        flag = "--" + key.rstrip("_").replace("_", "-")
        if isinstance(value, list):  # a repeatable option (--set)
            words += [w for item in value for w in (flag, str(item))]
        else:
            words += [flag] if value is True else [flag, str(value)]
    return shlex.join(words)


def _dtype(pipeline: object) -> str:
    import torch

    precision = getattr(pipeline, "precision", None)
    if precision:  # an mrsisr.runtime.Accelerated pipeline
        return f"float32 weights, {precision} autocast"
    if isinstance(pipeline, torch.nn.Module):
        for p in pipeline.parameters():
            return str(p.dtype).replace("torch.", "")
    return "float32"


def _nfe_bar():
    """One rich bar over the subject's network evaluations, with ETA."""
    from mrsisr.progress import progress_bar

    return progress_bar("network evaluations", console=console)


def register(app: typer.Typer) -> None:
    """Add `sr` to the application.

    Args:
        app: The root typer app.
    """
    app.command("sr")(sr_cmd)
