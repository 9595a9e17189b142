"""`mrsisr data`: build the phantom cohort and check a dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Data: build the digital glioma phantom cohort, check a dataset folder.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _data() -> None:
    """Data: build the digital glioma phantom cohort, check a dataset folder."""


@app.command()
def phantom(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder of the cohort.")],
    subjects: Annotated[int, typer.Option(min=1, help="Number of subjects.")] = 25,
    seed: Annotated[int, typer.Option(help="Cohort seed (same seed, same files).")] = 0,
    preview: Annotated[
        Path | None,
        typer.Option(help="Also draw one slice of the first subject to this PNG."),
    ] = None,
) -> None:
    """Simulate the digital glioma MRSI phantom cohort in the NIfTI layout."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mrsisr.data.phantom import make_phantom_cohort, save_preview, subject_id
    from mrsisr.outputs import atomic_dir, check_writable, prepare_out

    # an earlier phantom cohort (phantom.json) may be replaced; any other folder is refused
    out = prepare_out(out, marker="phantom.json", command="mrsisr data phantom")
    if preview is not None:
        check_writable(Path(preview).absolute().parent, "--preview")
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("phantom", total=subjects)
        with atomic_dir(out) as tmp:
            make_phantom_cohort(
                tmp,
                subjects=subjects,
                seed=seed,
                progress=lambda i, n: bar.update(task, completed=i),
            )
    typer.echo(f"wrote {subjects} phantom subjects (seed {seed}) to {out}")
    if preview is not None:
        save_preview(out / subject_id(0), preview)
        typer.echo(f"preview: {preview}")


@app.command()
def check(
    directory: Annotated[Path, typer.Argument(help="Dataset folder (one folder per subject).")],
) -> None:
    """Validate a dataset folder; print one line per problem (exit 2) or a summary."""
    from mrsisr.data.layout import subject_dirs, subject_notes
    from mrsisr.data.nifti import check_dataset, load_subject

    problems = check_dataset(directory)
    for d in subject_dirs(directory):
        for line in subject_notes(d):
            typer.echo(f"note: {line}", err=True)
    if problems:
        for line in problems:
            typer.echo(f"problem: {line}", err=True)
        typer.echo(f"{len(problems)} problem(s) in {directory}", err=True)
        raise typer.Exit(2)
    dirs = subject_dirs(directory)
    n_maps = n_slices = 0
    mets: set[str] = set()
    for d in dirs:
        sub = load_subject(d)
        mets.update(sub.metabolites)
        n_slices += sub.n_slices
        n_maps += sum(
            int(sub.masks[m].reshape(sub.n_slices, -1).any(1).sum()) for m in sub.metabolites
        )
    typer.echo(
        f"OK: {len(dirs)} subject(s), {n_slices} slices, {n_maps} non-empty maps "
        f"({', '.join(sorted(mets))}) in {directory}"
    )
