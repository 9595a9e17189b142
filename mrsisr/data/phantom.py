"""A digital glioma MRSI phantom cohort built from the MNI152 2009 templates shipped with nilearn.

Design: `PHANTOM.md` (in the project's shared notes); the user-facing description is
`docs/data.md`. Per subject, with its own random generator
`PCG64(SeedSequence([seed, subject_index]))`:

1. **Anatomy**: the template's GM, WM and T1 (skull-stripped, 1 mm) sampled through a random pose
   (rotation, scale, translation), a smooth elastic displacement, a ventricle enlargement push and
   the tumour's mass effect.
2. **Tumour**: a high-grade glioma centred in cerebral WM of a random lobe: necrotic core,
   enhancing rim, infiltration band and WM-following edema, soft-edged with an irregular
   boundary, with the metabolic factors of PHANTOM.md §3 and a heterogeneity field.
3. **Metabolites**: `c_m = p_GM c_m^GM + p_WM c_m^WM` (PHANTOM.md §2, per-subject ratio jitter),
   times the tumour factors, on a fine grid (`oversample`× in-plane and through-plane).
4. **Acquisition**: the Hamming-weighted disc k-space point-spread function of the 64×64 MRSI
   grid (the HR "ground truth" is itself PSF-limited), a lipid shell around the brain pushed
   through the same PSF, B0 inhomogeneity and linewidth, an SNR map, fit noise per metabolite,
   the quality mask (brain, SNR ≥ 2.5, linewidth ≤ 0.15 ppm, no lipid contamination), a few
   hot rim voxels, per-subject scale factors.
5. **MRI**: synthetic T1 (template contrast) and FLAIR with tumour appearance, a scalp shell, bias
   field, gamma jitter and Rician noise, averaged onto the MRSI grid.

Thirteen contiguous slices around the tumour are written per subject in the NIfTI layout that
[`load_subject`][mrsisr.data.nifti.load_subject] reads, plus diagnostics (clean maps, SNR,
linewidth, B0, tissue fractions, tumour labels).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mrsisr.constants import METABOLITES
from mrsisr.data.layout import write_nifti as _write_nifti
from mrsisr.data.phantom_model import (
    CONC_WM,
    LARMOR_MHZ,
    LINEWIDTH_MAX_PPM,
    N_SLICES,
    REGIONS,
    RHO,
    SNR_MIN,
    SNR_REF,
    VOXEL_MM,
    _acquire,
    _block,
    _hot_voxels,
    _psf_window,
    _Subject,
)
from mrsisr.errors import DataError

PHANTOM_VERSION = 1
"""Bumped whenever the generated data change (part of the cache key)."""


# --------------------------------------------------------------------------------------------
# template


# --------------------------------------------------------------------------------------------
# random fields and small helpers


# --------------------------------------------------------------------------------------------
# one subject


def simulate_subject(index: int, seed: int = 0, oversample: int = 2) -> dict:
    """Simulate one phantom subject in memory.

    Args:
        index: Subject index (0-based); with `seed` it fixes every random draw.
        seed: Cohort seed.
        oversample: Fine-grid factor in-plane and through-plane (PHANTOM.md uses 4; 2 keeps a
            25-subject cohort within the time budget and changes the maps by far less than the
            noise).

    Returns:
        A dict with `affine` (4×4), `maps`/`clean` (metabolite -> `(64, 64, 13)` float32),
        `mask` (uint8), `t1`, `flair`, `snr`, `linewidth_ppm`, `b0_hz`, `gm`, `wm`, `csf`,
        `labels` (uint8: 0 healthy/outside, 1 necrosis, 2 rim, 3 infiltration, 4 edema) and
        `params` (a JSON-able dict of the tumour and acquisition draws).
    """
    sim = _Subject(index, seed, oversample)
    d = sim.d
    window = _psf_window(oversample)
    keys = list(METABOLITES) + ["lipid"]
    coarse: dict[str, list[np.ndarray]] = {}
    for k in range(N_SLICES):
        fine = sim.slice_fine(k)
        for key in keys:
            coarse.setdefault(key, []).append(_acquire(fine[key], oversample, window))
        for key in ("gm", "wm", "csf", "brain", "t1", "flair", *REGIONS):
            coarse.setdefault(key, []).append(_block(fine[key], oversample))
        coarse.setdefault("y", []).append(_block(fine["y"], oversample))
    vol = {key: np.stack(v, axis=-1).astype(np.float32) for key, v in coarse.items() if key != "y"}
    y = np.stack(coarse["y"], axis=-1)  # (3, 64, 64, 13) aligned mm
    # B0 (Hz) from susceptibility blobs, linewidth and SNR (PHANTOM.md §4.3-4.4)
    blobs = [((0, 50, -15), (25, 12, 10)), ((-50, -20, -30), (10, 15, 10)),
             ((50, -20, -30), (10, 15, 10)), ((0, 10, -30), (15, 10, 10))]  # fmt: skip
    b0 = np.zeros(y.shape[1:], np.float64)
    for amp, (c, s) in zip(d.b0_amp, blobs, strict=True):
        q = sum(((y[i] - c[i]) / s[i]) ** 2 for i in range(3))
        b0 += amp * np.exp(-0.5 * q)
    grads = np.gradient(b0, *VOXEL_MM)
    grad_hz = np.sqrt(sum(g**2 for g in grads)) * VOXEL_MM[0]
    fwhm = np.sqrt(d.fwhm0**2 + (grad_hz / LARMOR_MHZ) ** 2)
    lateral = np.clip((np.abs(y[0]) / 70.0) ** 2 + np.clip(-y[2] / 50.0, 0, None), 0, 1)
    b1 = 1.0 - 0.3 * lateral
    snr = d.snr0 * b1 * (d.fwhm0 / fwhm)
    # quality mask (PHANTOM.md §4.7)
    leak = vol["lipid"]
    scale = {m: d.global_scale * d.met_scale[m] for m in METABOLITES}
    contaminated = leak > d.tau * CONC_WM["NAA"]
    mask = (vol["brain"] >= 0.5) & (snr >= SNR_MIN) & (fwhm <= LINEWIDTH_MAX_PPM) & ~contaminated
    nrng = sim.noise_rng
    maps, clean = {}, {}
    for m in METABOLITES:
        x = vol[m].astype(np.float64)
        if m in ("Glu", "Gln", "Ins", "Gly"):
            x = x + nrng.uniform(0, 0.05) * leak * ~contaminated
        clean[m] = (vol[m] * scale[m]).astype(np.float32)
        sigma = RHO[m] * CONC_WM[m] * SNR_REF / np.maximum(snr, 1e-3)
        noisy = np.clip(x + nrng.standard_normal(x.shape) * sigma, 0, None) * mask
        _hot_voxels(noisy, mask, nrng)
        maps[m] = (noisy * scale[m]).astype(np.float32)
    # MRI: bias field, gamma jitter, Rician noise, on the MRSI grid
    mri = {}
    yn = [y[i] / 100.0 for i in range(3)]
    terms = [np.ones_like(yn[0]), *yn, yn[0] ** 2, yn[1] ** 2, yn[2] ** 2, yn[0] * yn[1],
             yn[0] ** 3, yn[1] ** 3]  # fmt: skip
    for j, key in enumerate(("t1", "flair")):
        bias = 1 + 0.2 * np.tanh(sum(c * t for c, t in zip(d.mri_bias[j], terms, strict=True)) / 3)
        img = np.clip(vol[key] * bias, 0, None) ** d.mri_gamma[j]
        s = 1.0 / d.mri_snr
        re = img + nrng.standard_normal(img.shape) * s
        im = nrng.standard_normal(img.shape) * s
        mri[key] = np.sqrt(re**2 + im**2).astype(np.float32)
    soft = np.stack([1 - sum(vol[r] for r in REGIONS)] + [vol[r] for r in REGIONS])
    labels = (np.argmax(soft, axis=0) * (vol["brain"] >= 0.5)).astype(np.uint8)
    params = {
        "subject_index": index,
        "seed": seed,
        "first_slab_slice": sim.first,
        "tumour_centre_mni_mm": [round(float(v), 3) for v in d.centre],
        "tumour_radius_mm": round(d.radius, 3),
        "necrosis_radius_mm": round(d.r_necrosis, 3),
        "rim_mm": round(d.rim, 3),
        "infiltration_mm": round(d.infil, 3),
        "edema_reach_mm": round(d.edema_reach, 3),
        "mass_effect_k": round(d.mass_k, 4),
        "tumour_factors": {r: {m: round(v, 4) for m, v in f.items()} for r, f in d.factors.items()},
        "snr0": round(d.snr0, 3),
        "linewidth0_ppm": round(d.fwhm0, 4),
        "lipid_amplitude": round(d.lipid_amp, 2),
        "scale": {m: round(v, 5) for m, v in scale.items()},
    }
    return {
        "affine": sim.affine,
        "maps": maps,
        "clean": clean,
        "mask": mask.astype(np.uint8),
        "t1": mri["t1"],
        "flair": mri["flair"],
        "snr": snr.astype(np.float32),
        "linewidth_ppm": fwhm.astype(np.float32),
        "b0_hz": b0.astype(np.float32),
        "gm": vol["gm"],
        "wm": vol["wm"],
        "csf": vol["csf"],
        "labels": labels,
        "params": params,
    }


# --------------------------------------------------------------------------------------------
# writing


def write_subject(out_dir: Path, sub: dict) -> None:
    """Write one simulated subject in the NIfTI layout (plus `diagnostics/`).

    Args:
        out_dir: The subject folder (created).
        sub: The output of [`simulate_subject`][mrsisr.data.phantom.simulate_subject].
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    diag = out_dir / "diagnostics"
    diag.mkdir(exist_ok=True)
    a = sub["affine"]
    for m in METABOLITES:
        _write_nifti(out_dir / f"{m}.nii.gz", sub["maps"][m], a)
        _write_nifti(diag / f"clean_{m}.nii.gz", sub["clean"][m], a)
    _write_nifti(out_dir / "mask.nii.gz", sub["mask"], a)
    _write_nifti(out_dir / "T1.nii.gz", sub["t1"], a)
    _write_nifti(out_dir / "FLAIR.nii.gz", sub["flair"], a)
    for key in ("snr", "linewidth_ppm", "b0_hz", "gm", "wm", "csf", "labels"):
        _write_nifti(diag / f"{key}.nii.gz", sub[key], a)
    (diag / "params.json").write_text(json.dumps(sub["params"], indent=1, sort_keys=True) + "\n")


def subject_id(index: int) -> str:
    """Folder name of phantom subject `index` (0-based): `sub-01`, `sub-02`, ...

    Args:
        index: 0-based subject index.

    Returns:
        The id.
    """
    return f"sub-{index + 1:02d}"


def make_phantom_cohort(
    out_dir: str | Path,
    subjects: int = 25,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    oversample: int = 2,
) -> Path:
    """Simulate and write a phantom cohort in the real-data NIfTI layout.

    Deterministic: the same `seed` and `subjects` give byte-identical files.

    Args:
        out_dir: Output folder (created; existing subject folders are overwritten).
        subjects: Number of subjects.
        seed: Cohort seed.
        progress: Called as `progress(done, total)` after each subject.
        oversample: Fine-grid factor (see
            [`simulate_subject`][mrsisr.data.phantom.simulate_subject]).

    Returns:
        The output folder.

    Examples:
        >>> import tempfile
        >>> from mrsisr.data import load_subject, make_phantom_cohort
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     sub = load_subject(make_phantom_cohort(tmp, subjects=1, seed=3) / "sub-01")
        >>> sub.shape, sub.metabolites[:3]
        ((13, 64, 64), ('tCr', 'tCho', 'NAA'))
    """
    if subjects < 1:
        raise DataError(f"subjects = {subjects}: make at least one subject")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(subjects):
        write_subject(out / subject_id(i), simulate_subject(i, seed, oversample))
        if progress is not None:
            progress(i + 1, subjects)
    info = {"generator": "mrsisr phantom", "version": PHANTOM_VERSION, "seed": seed,
            "subjects": subjects, "oversample": oversample}  # fmt: skip
    (out / "phantom.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return out


def default_cache_dir() -> Path:
    """Root of mrsisr's cache: `$MRSISR_CACHE`, else `~/.cache/mrsisr`.

    Returns:
        The folder (not created).
    """
    env = os.environ.get("MRSISR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mrsisr"


def phantom_cohort(seed: int = 0, subjects: int = 25, cache_dir: str | Path | None = None) -> Path:
    """Return the folder of a cached phantom cohort, building it once if missing.

    The cohort lives in `<cache>/phantom-s{seed}-n{subjects}` (cache: `cache_dir`, else
    `$MRSISR_CACHE`, else `~/.cache/mrsisr`). It is built into a temporary folder next to it
    and renamed into place, so an interrupted build never leaves a half-written cohort.

    Args:
        seed: Cohort seed.
        subjects: Number of subjects.
        cache_dir: Cache root.

    Returns:
        The cohort folder.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / f"phantom-s{seed}-n{subjects}"
    marker = target / "phantom.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("version") == PHANTOM_VERSION:
            return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        make_phantom_cohort(tmp, subjects=subjects, seed=seed)
        if target.exists():  # stale version (or a concurrent build finished first)
            if (target / "phantom.json").is_file() and json.loads(
                (target / "phantom.json").read_text()
            ).get("version") == PHANTOM_VERSION:
                return target
            shutil.rmtree(target)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "phantom.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def save_preview(subject_dir: str | Path, png: str | Path, slice_index: int | None = None) -> Path:
    """Draw one slice of every metabolite, the mask, T1 and FLAIR of one subject to a PNG.

    Args:
        subject_dir: A subject folder (any layout [`load_subject`][mrsisr.data.nifti.load_subject]
            reads).
        png: Output image path.
        slice_index: Slice to draw; default the middle slice (the tumour centre for the phantom).

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mrsisr.data.nifti import load_subject

    sub = load_subject(subject_dir)
    k = sub.n_slices // 2 if slice_index is None else int(slice_index)
    if not 0 <= k < sub.n_slices:
        raise DataError(f"slice {k}: choose 0..{sub.n_slices - 1}")
    panels = [(m, sub.maps[m][k], "magma") for m in sub.metabolites]
    any_mask = np.any(np.stack([sub.masks[m][k] for m in sub.metabolites]), axis=0)
    panels += [("mask", any_mask.astype(float), "gray"), ("T1", sub.t1[k], "gray"),
               ("FLAIR", sub.flair[k], "gray")]  # fmt: skip
    cols = 5
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, img, cmap) in zip(axes.ravel(), panels, strict=False):
        # NIfTI (x, y) -> display with anterior up, subject's right on the image left
        ax.imshow(np.rot90(img), cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"{sub.subject}, slice {k}", fontsize=11)
    fig.tight_layout()
    out = Path(png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return out
