"""Super-resolve a subject's whole 3-D volume, with uncertainty maps from repeated samples.

The input is one subject folder in the real-data layout (see the Data page): metabolite maps, the
quality mask, T1 and FLAIR. Maps at their acquired matrix (e.g. 16×16) are zero-filled in k-space
to the 64×64 grid, exactly as the protocol degrades a map, and the scale is `64 / L`; for maps
already on the 64×64 grid `scale` says how coarse they really are (acquired matrix `64 / scale`).
Every non-empty slice of every metabolite is normalised by
its maximum, reduced to the central `64/scale` block of its k-space (exactly as in training; a map
that was zero-filled from that matrix passes unchanged), super-resolved, and scaled back to the
input's units. With `samples > 1` the model is sampled that many times per slice and the mean and
the per-voxel standard deviation (the uncertainty) are returned. Complex maps read at their
acquired matrix also carry the acquisition itself
([`Subject.measured`][mrsisr.data.nifti.Subject]): with data consistency (`--consistency kspace`)
their k-space block is the data term as acquired, where magnitude maps only allow an estimate.

The sampling knobs (`--steps`, `--tau-d`, `--tau-f`) become recipe overrides through
[`sampling_overrides`][mrsisr.zoo.sampling_overrides].
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrsisr.errors import DataError, MrsisrError
from mrsisr.pipelines.inference import check_scale, resolve_scale, super_resolve_map, uses_mri
from mrsisr.zoo import sampling_overrides

__all__ = [  # the map-level helpers come from mrsisr.pipelines.inference
    "SRResult",
    "check_scale",
    "default_batch",
    "estimate_seconds",
    "maps_per_call",
    "resolve_scale",
    "sampling_overrides",
    "save_preview",
    "super_resolve",
    "super_resolve_map",
    "uses_mri",
    "write_sr",
]


@dataclass
class SRResult:
    """Super-resolved volumes of one subject.

    Attributes:
        subject: Subject id.
        affine: The 4×4 affine of the 64×64 grid (the input's, or the zero-filled grid's for
            maps read at their acquired matrix), copied to every output.
        mean: Metabolite → super-resolved map `(S, 64, 64)` in the input's units (the mean of the
            samples).
        std: Metabolite → per-voxel standard deviation over the samples (only when `samples > 1`).
        lr: Metabolite → the low-resolution input the model saw, in the input's units.
        samples: Samples per slice.
        scale: Upscaling factor.
        info: Provenance (model, size, NFE, slices done).
        header: The source map's NIfTI header, carried over to the outputs (`None`: a fresh one).
    """

    subject: str
    affine: np.ndarray
    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    lr: dict[str, np.ndarray]
    samples: int
    scale: float
    info: dict[str, Any] = field(default_factory=dict)
    header: Any = None


CPU_BATCH = 16
"""Default images per network evaluation on a CPU. `benchmarks/perf.py --recipe ftddm --batches
16,32,64 --channels-last` measured the small UNet at 47, 62 and 71 ms per image on the 2-core build
machine: a smaller batch keeps the activations in cache."""

GPU_BATCH = 64
"""Default images per network evaluation on an accelerator."""


def default_batch(device: str | torch.device) -> int:
    """Images per network evaluation when `--batch` is not given: smaller on a CPU.

    Args:
        device: Where the networks run.

    Returns:
        [`CPU_BATCH`][mrsisr.sr.CPU_BATCH] on a CPU, [`GPU_BATCH`][mrsisr.sr.GPU_BATCH]
        elsewhere.

    Examples:
        >>> default_batch("cpu"), default_batch("cuda")
        (16, 64)
    """
    return CPU_BATCH if torch.device(device).type == "cpu" else GPU_BATCH


def maps_per_call(batch: int, samples: int) -> int:
    """Maps per sampling call when `batch` counts images and each map is drawn `samples` times.

    Args:
        batch: Images per network evaluation (`--batch`).
        samples: Samples per map (`--samples`).

    Returns:
        `batch // samples`, at least 1.

    Raises:
        MrsisrError: If `batch` is below 1.

    Examples:
        >>> maps_per_call(64, 4), maps_per_call(2, 4)
        (16, 1)
    """
    if batch < 1:
        raise MrsisrError(f"`batch` must be at least 1, got {batch}")
    return max(1, int(batch) // max(1, int(samples)))


def super_resolve(
    pipeline: Any,
    subject: Any,
    scale: float | None = None,
    *,
    samples: int = 4,
    metabolites: Sequence[str] | None = None,
    batch: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> SRResult:
    """Super-resolve every non-empty slice of every metabolite of one subject.

    Args:
        pipeline: A ready pipeline (e.g. from [`mrsisr.load`][mrsisr.zoo.load]).
        subject: A [`Subject`][mrsisr.data.nifti.Subject] or a subject folder.
        scale: Upscaling factor; the maps' acquired matrix is `64 / scale` (8, 4 or 2 in the
            paper). `None` takes it from maps read at their acquired matrix (`64 / L`).
        samples: Samples per slice: the output is their mean and, with more than 1, their
            standard deviation (the uncertainty). 4 by default: a single sample of a generative
            model carries its sampling noise.
        metabolites: Metabolites to super-resolve (default: every map the subject has).
        batch: Images per network evaluation, the same meaning as everywhere in mrsisr: each
            call samples `batch // samples` maps (at least one), each `samples` times. `None`:
            [`default_batch`][mrsisr.sr.default_batch] for `device`.
        seed: Seed of the sampling noise.
        device: Where to sample.
        progress: Called as `progress(done, total)` after each network evaluation, counted over
            the whole subject.

    Returns:
        The [`SRResult`][mrsisr.sr.SRResult].

    Raises:
        DataError: If the scale is not usable, disagrees with the maps' acquired matrix, or the
            subject has nothing to super-resolve.
    """
    from mrsisr.data import MRSIDataset, collate, load_subject
    from mrsisr.data.degrade import _check_size

    sub = subject if not isinstance(subject, (str, os.PathLike)) else load_subject(subject)
    scale = resolve_scale(scale, getattr(sub, "native_size", None), sub.subject)
    if samples < 1:
        raise MrsisrError(f"`samples` must be at least 1, got {samples}")
    lr_size = int(round(64 / scale))
    _check_size(lr_size, 64)
    mets = tuple(metabolites) if metabolites else sub.metabolites
    missing = [m for m in mets if m not in sub.maps]
    if missing:
        raise DataError(
            f"{sub.subject}: no map for {', '.join(missing)}; it has {', '.join(sub.metabolites)}"
        )
    data = MRSIDataset([sub], metabolites=mets, lr_size=lr_size)
    if len(data) == 0:
        raise DataError(
            f"{sub.subject}: every map is empty inside its mask; nothing to super-resolve"
        )
    device = torch.device(device)
    batch = default_batch(device) if batch is None else batch
    gen = torch.Generator(device=device).manual_seed(int(seed))
    mean = {m: np.zeros(sub.shape, np.float32) for m in mets}
    std = {m: np.zeros(sub.shape, np.float32) for m in mets} if samples > 1 else {}
    lr = {m: np.zeros(sub.shape, np.float32) for m in mets}
    nfe = int(getattr(pipeline, "nfe", 1)) or 1
    per_call = maps_per_call(batch, samples)
    total = nfe * -(-len(data) // per_call)
    done = [0]

    def tick(n: int) -> None:
        done[0] = min(done[0] + n, total)
        if progress is not None:
            progress(done[0], total)

    for start in range(0, len(data), per_call):
        items = [data[i] for i in range(start, min(start + per_call, len(data)))]
        b = collate(items).to(device)
        with torch.no_grad():
            x = pipeline.sample(b.cond.repeat(samples), generator=gen, progress=tick)
        x = x.view(len(items), samples, *x.shape[-2:]).float()
        x = x * b.cond.mask  # (B, 1, H, W) broadcasts over the samples
        top = b.max_value.view(-1, 1, 1, 1).float()
        mu = (x.mean(1, keepdim=True) * top).cpu().numpy()
        sd = (x.std(1, unbiased=False, keepdim=True) * top).cpu().numpy() if samples > 1 else None
        low = (b.cond.lr.clamp(0, 1) * b.cond.mask * top).cpu().numpy()
        for j, item in enumerate(items):
            mean[item.metabolite][item.slice_index] = mu[j, 0]
            lr[item.metabolite][item.slice_index] = low[j, 0]
            if sd is not None:
                std[item.metabolite][item.slice_index] = sd[j, 0]
    return SRResult(
        subject=sub.subject,
        affine=np.asarray(sub.affine, dtype=np.float64),
        mean=mean,
        std=std,
        lr=lr,
        samples=int(samples),
        scale=float(scale),
        info={
            "maps": len(data),
            "nfe": nfe,
            "native_matrix": getattr(sub, "native_size", None),
            # metabolites whose acquisition (complex, at its matrix) is known: data consistency
            # takes their k-space block as it is instead of estimating it from the magnitude
            "measured": sorted(m for m in mets if m in getattr(sub, "measured", {})),
        },
        header=getattr(sub, "header", None),
    )


def write_sr(
    result: SRResult,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> list[Path]:
    """Write a super-resolution result as NIfTI volumes with the input's affine.

    Files: `<met>.nii.gz` (the super-resolved map, the mean when several samples were drawn),
    `<met>_std.nii.gz` (uncertainty, when `samples > 1`), `<met>_lr.nii.gz` (the input the model
    saw) and `sr.json` (provenance). Everything is written into a temporary folder next to `out`
    and renamed into place, so a failure leaves nothing half-written.

    `overwrite` replaces only an earlier output of `mrsisr sr` (a folder holding `sr.json`), and
    never the current folder, an input or a folder above them (see
    [`prepare_out`][mrsisr.outputs.prepare_out]).

    Args:
        result: The output of [`super_resolve`][mrsisr.sr.super_resolve].
        out: Output folder; it must not exist (or be empty) unless `overwrite`.
        overwrite: Replace an earlier `mrsisr sr` output folder.
        inputs: The subject folder(s) read; they are never replaced.

    Returns:
        The written files.

    Raises:
        MrsisrError: If `out` may not be written.
    """
    from mrsisr.data.layout import write_nifti
    from mrsisr.outputs import atomic_dir, prepare_out

    out = prepare_out(
        out, marker="sr.json", overwrite=overwrite, inputs=inputs, command="mrsisr sr"
    )
    with atomic_dir(out) as tmp:
        names = []
        for met in result.mean:
            volumes = {"": result.mean[met], "_lr": result.lr[met]}
            if met in result.std:
                volumes["_std"] = result.std[met]
            for suffix, vol in volumes.items():
                name = f"{met}{suffix}.nii.gz"
                # (S, x, y) -> (x, y, S); the source map's header, with the 64 grid's affine
                write_nifti(tmp / name, np.moveaxis(vol, 0, 2), result.affine, result.header)
                names.append(name)
        info = dict(result.info, subject=result.subject, samples=result.samples, scale=result.scale)
        (tmp / "sr.json").write_text(json.dumps(info, indent=2) + "\n")
        names.append("sr.json")
    return [out / n for n in names]


def save_preview(
    result: SRResult,
    subject: Any,
    path: str | os.PathLike[str],
    *,
    slice_index: int | None = None,
    units: str = "input units",
) -> Path:
    """A figure of one slice: per metabolite the LR input, the SR mean, the std and the FLAIR.

    Args:
        result: The output of [`super_resolve`][mrsisr.sr.super_resolve].
        subject: The [`Subject`][mrsisr.data.nifti.Subject] it came from (for the FLAIR and
            the masks).
        path: The PNG file to write.
        slice_index: The slice to show (default: the one with the largest mask, summed over the
            metabolites).
        units: Label of the maps' colour bars.

    Returns:
        The written file.

    Raises:
        DataError: If `slice_index` is not a slice of the subject.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mets = list(result.mean)
    n_slices = int(next(iter(result.mean.values())).shape[0])
    if slice_index is None:
        area = sum(subject.masks[m].reshape(n_slices, -1).sum(1) for m in mets)
        slice_index = int(np.argmax(area))
    if not 0 <= int(slice_index) < n_slices:
        raise DataError(f"`slice_index` {slice_index}: the subject has slices 0-{n_slices - 1}")
    k = int(slice_index)
    cols = ["LR input", "SR mean", "SR std (uncertainty)", "FLAIR"]
    fig, axes = plt.subplots(
        len(mets), 4, figsize=(10.5, 2.5 * len(mets) + 0.6), squeeze=False, layout="constrained"
    )
    for r, met in enumerate(mets):
        top = float(max(result.lr[met][k].max(), result.mean[met][k].max())) or 1.0
        std = result.std.get(met)
        panels = [
            (result.lr[met][k], "viridis", (0, top), units),
            (result.mean[met][k], "viridis", (0, top), units),
            (
                std[k] if std is not None else np.zeros_like(result.mean[met][k]),
                "magma",
                None,
                units,
            ),
            (subject.flair[k], "gray", None, "a.u."),
        ]
        for c, (img, cmap, lim, label) in enumerate(panels):
            ax = axes[r, c]
            kw = {"vmin": lim[0], "vmax": lim[1]} if lim else {}
            im = ax.imshow(np.asarray(img).T, origin="lower", cmap=cmap, **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(
                    cols[c] if c != 2 or std is not None else "SR std (1 sample: none)", fontsize=9
                )
            fig.colorbar(im, ax=ax, shrink=0.8).set_label(label, fontsize=7)
        axes[r, 0].set_ylabel(met, fontsize=10)
    fig.suptitle(
        f"{result.subject}, slice {k}: ×{result.scale:g}, {result.samples} sample(s)", fontsize=10
    )
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


class _Timed(Exception):
    """Ends a timing call after enough network evaluations."""


def estimate_seconds(
    pipeline: Any, n_maps: int, samples: int, batch: int, device: str | torch.device = "cpu"
) -> float | None:
    """Estimate a run's sampling time by timing network evaluations at the run's batch shape.

    Only the [`Pipeline`][mrsisr.types.Pipeline] contract is used: a chain is cut short through
    `sample(progress=)` after its third evaluation and the time between the second and the third
    is taken as one evaluation's; a one-step model is timed whole (after a warm-up call).

    Args:
        pipeline: The pipeline.
        n_maps: Maps to super-resolve.
        samples: Samples per map.
        batch: Images per network evaluation (see [`maps_per_call`][mrsisr.sr.maps_per_call]).
        device: Where it runs.

    Returns:
        Seconds for all `nfe × calls` evaluations, or `None` for no maps.
    """
    import time

    from mrsisr.types import Condition

    if n_maps < 1:
        return None
    per_call_maps = maps_per_call(batch, samples)
    b = min(per_call_maps, n_maps) * samples
    ones = torch.ones(b, 1, 64, 64, device=device)
    cond = Condition(ones, ones, ones, ones, torch.full((b,), 4.0, device=device))
    nfe = int(getattr(pipeline, "nfe", 1)) or 1
    stamps: list[float] = []

    def tick(n: int) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) >= 3:
            raise _Timed

    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        try:
            pipeline.sample(cond, generator=gen, progress=tick)
        except _Timed:
            pass
        if len(stamps) >= 3:
            per_eval = stamps[2] - stamps[1]
        else:  # the whole call is one or two evaluations: time it again, warmed up
            start = time.perf_counter()
            pipeline.sample(cond, generator=gen)
            per_eval = (time.perf_counter() - start) / nfe
    calls = -(-n_maps // per_call_maps)
    return per_eval * nfe * calls
