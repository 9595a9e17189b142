"""Super-resolve a subject's whole 3-D volume, with uncertainty maps from repeated samples.

The input is one subject folder in the real-data layout (see the Data page): metabolite maps, the
quality mask, T1 and FLAIR. Maps at their acquired matrix (e.g. 16×16) are zero-filled in k-space
to the 64×64 grid, exactly as the protocol degrades a map, and the scale is `64 / L`; for maps
already on the 64×64 grid `scale` says how coarse they really are (acquired matrix `64 / scale`).
Every non-empty slice of every metabolite is normalised by
its maximum, reduced to the central `64/scale` block of its k-space (exactly as in training; a map
that was zero-filled from that matrix passes unchanged), super-resolved, and scaled back to the
input's units. With `samples > 1` the model is sampled that many times per slice and the mean and
the per-voxel standard deviation (the uncertainty) are returned.

Examples:
    >>> from mrsisr.sr import sampling_overrides
    >>> sampling_overrides("ftddm", steps=50, tau_d=0.5)
    {'sampler': {'type': 'respace', 'steps': 50, 'tau_d': 0.5}}
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrsisr.errors import DataError, MrsisrError, RecipeError

__all__ = [
    "SRResult",
    "check_scale",
    "estimate_seconds",
    "resolve_scale",
    "sampling_overrides",
    "save_preview",
    "super_resolve",
    "super_resolve_map",
    "uses_mri",
    "write_sr",
]


def sampling_overrides(
    name: str,
    size: str = "small",
    *,
    steps: int | None = None,
    tau_d: float | None = None,
    tau_f: float | None = None,
) -> dict[str, Any]:
    """Recipe overrides for the sampling knobs: number of steps, τd and τf.

    `steps` keeps the recipe's sampler when it has a `steps` argument (respace, DPM-Solver++);
    an ancestral sampler becomes `respace` with that many steps from the same `t_start` (the
    paper's "FTDDM with 50 steps"), keeping its τd.

    Args:
        name: Recipe name or TOML path.
        size: Size variant.
        steps: Sampler steps K.
        tau_d: Step-noise temperature of an ancestral or respaced sampler.
        tau_f: Prior temperature of a flow initializer.

    Returns:
        A nested override mapping for [`load_recipe`][mrsisr.recipes.load_recipe] or
        [`mrsisr.load`][mrsisr.zoo.load].

    Raises:
        RecipeError: If the recipe has no such knob (e.g. `steps` for a one-step model).
    """
    from mrsisr.recipes import load_recipe

    recipe = load_recipe(name, size=size)
    sampler = dict(recipe.tables.get("sampler", {}))
    out: dict[str, Any] = {}
    if steps is not None:
        if not sampler:
            raise RecipeError(f"{recipe.where}: has no sampler, so --steps does not apply")
        if int(steps) < 1:
            raise RecipeError(f"--steps must be at least 1, got {steps}")
        if sampler.get("type") == "ancestral":
            new = {"type": "respace", "steps": int(steps)}
            if "tau_d" in sampler:
                new["tau_d"] = sampler["tau_d"]
            out["sampler"] = new
        else:
            out["sampler"] = {"steps": int(steps)}
    if tau_d is not None:
        if sampler.get("type") not in ("ancestral", "respace"):
            raise RecipeError(
                f"{recipe.where}: --tau-d applies to ancestral or respaced samplers, not "
                f"'{sampler.get('type', 'none')}'"
            )
        out.setdefault("sampler", {})["tau_d"] = float(tau_d)
    if tau_f is not None:
        if recipe.tables.get("initializer", {}).get("type") != "flow":
            raise RecipeError(f"{recipe.where}: --tau-f applies to a flow initializer only")
        out["initializer"] = {"tau_f": float(tau_f)}
    return out


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


def super_resolve(
    pipeline: Any,
    subject: Any,
    scale: float | None = None,
    *,
    samples: int = 4,
    metabolites: Sequence[str] | None = None,
    batch: int = 32,
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
        batch: Maps per sampling call (each repeated `samples` times).
        seed: Seed of the sampling noise.
        device: Where to sample.
        progress: Called as `progress(done, total)` after each network evaluation (for one-step
            models, after each batch), counted over the whole subject.

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
        raise MrsisrError(f"--samples must be at least 1, got {samples}")
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
    gen = torch.Generator(device=device).manual_seed(int(seed))
    mean = {m: np.zeros(sub.shape, np.float32) for m in mets}
    std = {m: np.zeros(sub.shape, np.float32) for m in mets} if samples > 1 else {}
    lr = {m: np.zeros(sub.shape, np.float32) for m in mets}
    nfe = int(getattr(pipeline, "nfe", 1)) or 1
    n_batches = -(-len(data) // batch)
    counter = _NFECounter(pipeline, nfe * n_batches, progress)
    try:
        for start in range(0, len(data), batch):
            items = [data[i] for i in range(start, min(start + batch, len(data)))]
            b = collate(items).to(device)
            with torch.no_grad():
                x = pipeline.sample(b.cond.repeat(samples), generator=gen)
            counter.batch_done()
            x = x.view(len(items), samples, *x.shape[-2:]).float()
            x = x * b.cond.mask  # (B, 1, H, W) broadcasts over the samples
            top = b.max_value.view(-1, 1, 1, 1).float()
            mu = (x.mean(1, keepdim=True) * top).cpu().numpy()
            sd = (
                (x.std(1, unbiased=False, keepdim=True) * top).cpu().numpy()
                if samples > 1
                else None
            )
            low = (b.cond.lr.clamp(0, 1) * b.cond.mask * top).cpu().numpy()
            for j, item in enumerate(items):
                mean[item.metabolite][item.slice_index] = mu[j, 0]
                lr[item.metabolite][item.slice_index] = low[j, 0]
                if sd is not None:
                    std[item.metabolite][item.slice_index] = sd[j, 0]
    finally:
        counter.close()
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
        },
        header=getattr(sub, "header", None),
    )


class _NFECounter:
    """Counts network evaluations of a pipeline's denoiser for a progress callback."""

    def __init__(
        self, pipeline: Any, total: int, progress: Callable[[int, int], None] | None
    ) -> None:
        self.done, self.total, self.progress = 0, int(total), progress
        self.per_batch = int(getattr(pipeline, "nfe", 1)) or 1
        self.seen_in_batch = 0
        denoiser = getattr(pipeline, "denoiser", None)
        self.hook = (
            denoiser.register_forward_hook(lambda *_: self._tick())
            if progress is not None and isinstance(denoiser, torch.nn.Module)
            else None
        )

    def _tick(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        self.seen_in_batch += n
        if self.progress is not None:
            self.progress(self.done, self.total)

    def batch_done(self) -> None:
        """Account for the evaluations of a batch that no hook saw (one-step models, flows)."""
        rest = self.per_batch - self.seen_in_batch
        if rest > 0:
            self._tick(rest)
        self.seen_in_batch = 0

    def close(self) -> None:
        """Remove the hook."""
        if self.hook is not None:
            self.hook.remove()


def resolve_scale(scale: float | None, native_size: int | None, where: str = "input") -> float:
    """The upscaling factor from `--scale` and the maps' acquired matrix, which must agree.

    Args:
        scale: The factor asked for, or `None`.
        native_size: In-plane matrix `L` of maps read at their acquired resolution, or `None`
            for maps given on the 64×64 grid.
        where: What to name in messages (the subject).

    Returns:
        The factor: `scale`, or `64 / L` when `scale` is `None`.

    Raises:
        DataError: If neither is known, or they disagree.
    """
    if native_size:
        implied = 64 / int(native_size)
        if scale is not None and abs(check_scale(scale) - implied) > 1e-9:
            raise DataError(
                f"{where}: the maps are {native_size}×{native_size}, i.e. ×{implied:g}, not "
                f"--scale {scale:g}; drop --scale or pass {implied:g}"
            )
        return implied
    if scale is None:
        raise DataError(
            f"{where}: the maps are on the 64×64 grid, so their acquired matrix is unknown; pass "
            "--scale (64 / acquired matrix, e.g. 4 for 16×16)"
        )
    return check_scale(scale)


def check_scale(scale: float) -> float:
    """Check an upscaling factor before any work: finite, positive, `64 / scale` a whole size.

    Args:
        scale: The factor (`--scale`).

    Returns:
        The factor as a float.

    Raises:
        DataError: With one line saying which values work.
    """
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise DataError(
            f"--scale {scale}: must be a finite factor of at least 1, such as 2, 4 or 8"
        )
    lr_size = 64 / value
    if abs(lr_size - round(lr_size)) > 1e-9:
        raise DataError(
            f"--scale {scale}: 64 / scale must be a whole matrix size such as 8, 16, 32"
        )
    return value


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
    from mrsisr.data.nifti import write_nifti
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


def uses_mri(pipeline: Any) -> bool:
    """Whether a pipeline's networks read T1 and FLAIR.

    Networks declare it with a boolean `use_mri` (UNets, discriminators) or `mri` (flows); a
    pipeline none of whose parts declares it (MUNet) is taken to read them.

    Args:
        pipeline: A built pipeline.

    Returns:
        `False` only when every part that declares it says no.
    """
    flags = [
        value
        for m in (pipeline.modules() if isinstance(pipeline, torch.nn.Module) else ())
        for value in (getattr(m, "use_mri", None), getattr(m, "mri", None))
        if isinstance(value, bool)
    ]
    return any(flags) if flags else True


def _grid_map(name: str, a: Any, native: int | None) -> np.ndarray:
    """A 2-D input as a float array on the 64 grid (nearest-voxel upsampling from `native`)."""
    from mrsisr.data.degrade import nearest_native_index

    arr = np.asarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)
    if arr.ndim != 2:
        raise DataError(f"{name}: expected one 2-D map, got shape {arr.shape}")
    if arr.shape == (64, 64):
        return arr
    if native is not None and arr.shape == (native, native):
        up = nearest_native_index(native)
        return arr[up][:, up]
    raise DataError(
        f"{name}: shape {arr.shape}; give it on the 64×64 grid or on the map's "
        f"{native}×{native} grid"
        if native
        else f"{name}: shape {arr.shape}; give it on 64×64"
    )


def super_resolve_map(
    pipeline: Any,
    lr: Any,
    *,
    t1: Any = None,
    flair: Any = None,
    mask: Any = None,
    scale: float | None = None,
    samples: int = 4,
    seed: int = 0,
    metabolite: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Super-resolve one 2-D map given as arrays: the conventions of training, in one call.

    `lr` is the low-resolution map either at its acquired matrix (`L×L`, real or complex; it is
    zero-filled in k-space to 64×64 and the scale is `64 / L`) or on the 64×64 grid (then
    `scale` is required and the map is reduced to the central `64/scale` block of k-space, as
    in training). It is normalised by its maximum inside the mask, super-resolved and scaled
    back. T1 and FLAIR, on the 64×64 grid, are each divided by their maximum.

    Args:
        pipeline: A ready pipeline (e.g. from [`mrsisr.load`][mrsisr.zoo.load]).
        lr: The low-resolution map, numpy array or tensor, `(L, L)` or `(64, 64)`.
        t1: T1 on the 64×64 grid; may be left out only for a model trained without MRIs.
        flair: FLAIR on the 64×64 grid, like `t1`.
        mask: Quality mask on the 64×64 or the `L×L` grid (default: where `lr` is non-zero).
        scale: Upscaling factor; inferred from an `L×L` map (and checked against it).
        samples: Samples to draw; the mean and the per-voxel std are returned.
        seed: Seed of the sampling noise.
        metabolite: The metabolite's name, for networks with a metabolite input.

    Returns:
        `(mean, std)`: float32 arrays `(64, 64)` in the units of `lr`, zero outside the mask.

    Raises:
        DataError: For a wrong shape, non-finite or negative values, a scale that disagrees
            with the map's matrix, or missing MRIs for a model that reads them.

    Examples:
        >>> import numpy as np, mrsisr
        >>> from mrsisr.recipes import load_recipe
        >>> pipe = load_recipe("munet_fs_cwgan", size="tiny").build().eval()
        >>> lr16 = np.random.default_rng(0).random((16, 16))
        >>> mean, std = pipe.super_resolve(lr16, t1=np.ones((64, 64)), flair=np.ones((64, 64)))
        >>> mean.shape, std.shape
        ((64, 64), (64, 64))
    """
    from mrsisr.data import METABOLITES, kspace_lowres
    from mrsisr.data.degrade import _check_size, zero_fill
    from mrsisr.types import Condition

    if samples < 1:
        raise MrsisrError(f"samples must be at least 1, got {samples}")
    arr = np.asarray(lr.detach().cpu().numpy() if isinstance(lr, torch.Tensor) else lr)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise DataError(f"lr: expected a square 2-D map, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or (not np.iscomplexobj(arr) and (arr < 0).any()):
        raise DataError("lr: values must be finite and non-negative (0 marks excluded voxels)")
    native = int(arr.shape[0]) if arr.shape != (64, 64) else None
    if native is not None:
        _check_size(native, 64)
        mask64 = _grid_map("mask", mask if mask is not None else arr != 0, native) > 0
        grid = zero_fill(arr)
    else:
        if np.iscomplexobj(arr):
            raise DataError("lr: complex maps are taken at their acquired matrix only")
        mask64 = _grid_map("mask", mask if mask is not None else arr != 0, None) > 0
        grid = arr.astype(np.float32)
    scale = resolve_scale(scale, native, "lr")
    hr = grid * mask64
    top = float(hr.max())
    if not top > 0:
        raise DataError("lr: the map is zero inside its mask; nothing to super-resolve")
    low = kspace_lowres(hr / top, int(round(64 / scale))) if native is None else hr / top
    mris = {}
    for name, img in (("t1", t1), ("flair", flair)):
        if img is None:
            if uses_mri(pipeline):
                raise DataError(
                    f"{name}: this model reads T1 and FLAIR; pass both (on the 64×64 grid) or "
                    "use a recipe trained without MRIs"
                )
            mris[name] = np.zeros((64, 64), np.float32)
            continue
        a = _grid_map(name, img, None).astype(np.float32)
        mris[name] = a / a.max() if a.max() > 0 else a
    device = next((p.device for p in pipeline.parameters()), torch.device("cpu"))
    as_t = lambda a: torch.as_tensor(np.asarray(a, np.float32)).view(1, 1, 64, 64)  # noqa: E731
    met = None if metabolite is None else torch.tensor([METABOLITES.index(metabolite)])
    cond = Condition(
        mask=as_t(mask64),
        lr=as_t(low),
        t1=as_t(mris["t1"]),
        flair=as_t(mris["flair"]),
        scale=torch.tensor([float(scale)]),
        metabolite=met,
    ).to(device)
    gen = torch.Generator(device=device).manual_seed(int(seed))
    with torch.no_grad():
        x = pipeline.sample(cond.repeat(samples), generator=gen).float().cpu()
    x = x[:, 0] * torch.as_tensor(mask64, dtype=torch.float32)
    mean = (x.mean(0) * top).numpy().astype(np.float32)
    std = (x.std(0, unbiased=False) * top).numpy().astype(np.float32)
    return mean, std


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
        raise DataError(f"--preview-slice {slice_index}: the subject has slices 0-{n_slices - 1}")
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


def estimate_seconds(
    pipeline: Any, n_maps: int, samples: int, batch: int, device: str | torch.device = "cpu"
) -> float | None:
    """Estimate a run's sampling time by timing one network evaluation at the run's batch shape.

    Args:
        pipeline: The pipeline (its `denoiser` is timed; `None` is returned without one).
        n_maps: Maps to super-resolve.
        samples: Samples per map.
        batch: Maps per sampling call.
        device: Where it runs.

    Returns:
        Seconds for all `nfe × calls` evaluations, or `None` when it cannot be timed.
    """
    import time

    from mrsisr.types import Condition

    denoiser = getattr(pipeline, "denoiser", None)
    if not isinstance(denoiser, torch.nn.Module) or n_maps < 1:
        return None
    b = min(batch, n_maps) * samples
    ones = torch.ones(b, 1, 64, 64, device=device)
    cond = Condition(ones, ones, ones, ones, torch.full((b,), 4.0, device=device))
    t = torch.full((b,), 1, dtype=torch.long, device=device)
    with torch.no_grad():
        denoiser(ones, t, cond)  # warm-up
        start = time.perf_counter()
        denoiser(ones, t, cond)
        per_call = time.perf_counter() - start
    calls = -(-n_maps // batch)
    return per_call * int(getattr(pipeline, "nfe", 1)) * calls
