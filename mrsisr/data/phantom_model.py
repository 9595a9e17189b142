"""The phantom's model: tissue and tumour parameters (PHANTOM.md), the MNI152 anatomy and its
random draws, and the acquisition's point-spread function. [`mrsisr.data.phantom`][mrsisr.data.phantom]
simulates subjects and builds the cohort from these.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from mrsisr.constants import METABOLITES
from mrsisr.errors import DataError

GRID = 64


FOV_MM = 220.0


VOXEL_MM = (FOV_MM / GRID, FOV_MM / GRID, 3.41)


FOV_CENTRE = (0.0, -17.0)


SLAB_Z0 = -51.0


SLAB_SLICES = 39


N_SLICES = 13


# PHANTOM.md §2: healthy GM / WM concentrations (mM), CSF = 0.
CONC_GM = {
    "tCr": 6.70,
    "tCho": 1.17,
    "NAA": 8.45,
    "Glu": 8.53,
    "Ins": 4.35,
    "Gln": 4.25,
    "Gly": 1.1,
}


CONC_WM = {
    "tCr": 5.63,
    "tCho": 1.70,
    "NAA": 7.97,
    "Glu": 6.57,
    "Ins": 3.67,
    "Gln": 1.83,
    "Gly": 0.3,
}


# PHANTOM.md §3: tumour factors (low, high) per region, drawn uniformly per subject.
REGIONS = ("necrosis", "rim", "infiltration", "edema")


FACTORS = {
    "necrosis": {"tCr": (0.2, 0.4), "tCho": (0.2, 0.5), "NAA": (0.05, 0.2), "Glu": (0.2, 0.4),
                 "Ins": (0.2, 0.5), "Gln": (0.5, 1.2), "Gly": (0.5, 1.5)},
    "rim": {"tCr": (0.6, 0.9), "tCho": (1.8, 3.0), "NAA": (0.2, 0.5), "Glu": (0.6, 1.0),
            "Ins": (0.6, 1.1), "Gln": (2.0, 4.0), "Gly": (3.0, 10.0)},
    "infiltration": {"tCr": (0.8, 1.0), "tCho": (1.3, 2.0), "NAA": (0.4, 0.7), "Glu": (0.7, 1.0),
                     "Ins": (0.9, 1.5), "Gln": (1.5, 2.5), "Gly": (2.0, 5.0)},
    "edema": {"tCr": (0.8, 0.95), "tCho": (0.9, 1.3), "NAA": (0.7, 0.9), "Glu": (0.8, 0.95),
              "Ins": (1.0, 1.3), "Gln": (1.0, 1.5), "Gly": (1.0, 2.0)},
}  # fmt: skip


# PHANTOM.md §3: MRI intensities relative to WM = 1 (ranges drawn per subject).
T1_TUMOUR = {"necrosis": (0.30, 0.45), "rim": (0.55, 0.70), "infiltration": (0.55, 0.65),
             "edema": (0.60, 0.70)}  # fmt: skip


FLAIR_TUMOUR = {"necrosis": (0.5, 1.2), "rim": (1.1, 1.4), "infiltration": (1.3, 1.7),
                "edema": (1.4, 1.8)}  # fmt: skip


# PHANTOM.md §4.6: relative fit noise per metabolite at SNR_ref = 15.
RHO = {"tCr": 0.04, "tCho": 0.05, "NAA": 0.04, "Glu": 0.06, "Ins": 0.08, "Gln": 0.15, "Gly": 0.25}


SNR_REF = 15.0


LARMOR_MHZ = 297.2


LINEWIDTH_MAX_PPM = 0.15


SNR_MIN = 2.5


LOBES = {"frontal": 0.4, "temporal": 0.3, "parietal": 0.2, "occipital": 0.1}


@dataclass
class _Template:
    gm: np.ndarray
    wm: np.ndarray
    t1: np.ndarray  # WM = 1
    dist: np.ndarray  # mm outside the brain, 2 mm grid
    inv_affine: np.ndarray
    candidates: dict[str, np.ndarray]  # lobe -> (N, 3) MNI mm of deep-WM voxels


def template_dir() -> Path:
    """Folder of the MNI152 2009 templates inside the installed nilearn package.

    Returns:
        `nilearn/datasets/data`.
    """
    import importlib.util

    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("nilearn is not installed; `pip install nilearn` (the phantom needs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@lru_cache(maxsize=1)
def _template() -> _Template:
    import nibabel as nib
    from scipy import ndimage

    d = template_dir()
    name = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    try:
        imgs = {k: nib.load(str(d / name.format(k))) for k in ("t1", "gm", "wm")}
    except FileNotFoundError as e:
        raise DataError(
            f"{e.filename}: MNI template missing from nilearn; reinstall nilearn"
        ) from e
    t1 = np.asarray(imgs["t1"].dataobj, dtype=np.float32)
    brain = t1 > 0
    gm = np.asarray(imgs["gm"].dataobj, dtype=np.float32) / 255.0 * brain
    wm = np.asarray(imgs["wm"].dataobj, dtype=np.float32) / 255.0 * brain
    affine = np.asarray(imgs["t1"].affine, dtype=np.float64)
    # distance outside the brain on a 2 mm grid (enough for mm-scale shells, 8x cheaper)
    dist = ndimage.distance_transform_edt(~brain[::2, ::2, ::2], sampling=2.0).astype(np.float32)
    # deep cerebral WM voxels (2 mm grid) as tumour-centre candidates, by lobe
    idx = np.argwhere(wm[::2, ::2, ::2] > 0.7)
    mm = (affine[:3, :3] @ (idx.T * 2.0) + affine[:3, 3:4]).T
    x, y, z = mm.T
    ok = (np.abs(x) > 12) & (z > -25) & (z < 55)
    lobe = np.where(y > -5, 0, np.where(y < -65, 3, np.where(z < 5, 1, 2)))
    cands = {n: mm[ok & (lobe == i)] for i, n in enumerate(LOBES)}
    return _Template(gm, wm, t1 / 222.0, dist, np.linalg.inv(affine), cands)


def _sample(vol: np.ndarray, vox: np.ndarray, cval: float = 0.0) -> np.ndarray:
    from scipy import ndimage

    return ndimage.map_coordinates(vol, vox, order=1, mode="constant", cval=cval, output=np.float32)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float) -> np.ndarray:
    """Unit-variance Gaussian random field with Gaussian correlation of `sigma_vox` voxels."""
    from scipy import ndimage

    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return (f / (f.std() + 1e-12)).astype(np.float32)


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def mrsi_affine(first_slice: int) -> np.ndarray:
    """Voxel-to-world affine (RAS mm) of the exported MRSI grid from slab slice `first_slice`.

    Args:
        first_slice: Index of the first exported slice in the 39-slice slab.

    Returns:
        4×4 affine: `diag(3.4375, 3.4375, 3.41)` plus the first voxel's centre.
    """
    a = np.diag([*VOXEL_MM, 1.0])
    a[0, 3] = FOV_CENTRE[0] - FOV_MM / 2 + VOXEL_MM[0] / 2
    a[1, 3] = FOV_CENTRE[1] - FOV_MM / 2 + VOXEL_MM[1] / 2
    a[2, 3] = SLAB_Z0 + (first_slice + 0.5) * VOXEL_MM[2]
    return a


@dataclass
class _Draws:
    """Everything random about one subject (drawn up front, in a fixed order)."""

    rot: np.ndarray
    scale: np.ndarray
    shift: np.ndarray
    elastic: np.ndarray  # (3, X, Y, Z) mm on the elastic grid
    vent_push: float
    centre: np.ndarray  # tumour centre, MNI mm
    radius: float
    r_necrosis: float
    rim: float
    infil: float
    edema_reach: float
    mass_k: float
    factors: dict[str, dict[str, float]]
    t1_int: dict[str, float]
    flair_int: dict[str, float]
    jitter: dict[str, float]
    region_grad: dict[str, float]
    met_scale: dict[str, float]
    global_scale: float
    snr0: float
    fwhm0: float
    b0_amp: np.ndarray
    lipid_amp: float
    shells: tuple[float, float, float]
    tau: float
    mri_snr: float
    mri_gamma: tuple[float, float]
    mri_bias: np.ndarray  # (2, 10) cubic polynomial coefficients for T1, FLAIR
    sigma_h: float
    het_mix: np.ndarray  # (7, 2)


_ELASTIC_ORIGIN = np.array([-104.0, -140.0, -80.0])


_ELASTIC_STEP = 4.0


_ELASTIC_SHAPE = (53, 61, 45)


def _draw(rng: np.random.Generator, tpl: _Template) -> _Draws:
    u = rng.uniform
    rot = _rotation(*np.deg2rad([u(-4, 4), u(-4, 4), u(-10, 10)]))
    scale = np.exp(rng.normal(0, 0.05)) * rng.normal(1, 0.03, 3)
    shift = np.array([u(-6, 6), u(-6, 6), u(-3, 3)])
    alpha = u(2, 5)
    for _ in range(20):  # PHANTOM.md §5: reject folding elastic fields
        f = np.stack([_smooth_field(rng, _ELASTIC_SHAPE, 12.0 / _ELASTIC_STEP) for _ in range(3)])
        f *= alpha / np.sqrt((f**2).sum(0)).max()
        jac = np.stack([np.stack(np.gradient(f[i], _ELASTIC_STEP)) for i in range(3)])
        det = np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)) + np.eye(3))
        if det.min() >= 0.2:
            break
    lobes = list(LOBES)
    lobe = lobes[rng.choice(len(lobes), p=list(LOBES.values()))]
    cands = tpl.candidates[lobe]
    centre = cands[rng.integers(len(cands))] + rng.uniform(-1, 1, 3)
    radius = u(10, 30)
    r_nec = 0.0 if rng.random() < 0.2 else u(0, 0.6) * radius
    factors = {r: {m: u(*FACTORS[r][m]) for m in METABOLITES} for r in REGIONS}
    return _Draws(
        rot=rot,
        scale=scale,
        shift=shift,
        elastic=f.astype(np.float32),
        vent_push=u(0, 4),
        centre=centre,
        radius=radius,
        r_necrosis=r_nec,
        rim=u(3, 8),
        infil=u(3, 10),
        edema_reach=u(10, 30),
        mass_k=u(0.1, 0.3),
        factors=factors,
        t1_int={r: u(*T1_TUMOUR[r]) for r in REGIONS},
        flair_int={r: u(*FLAIR_TUMOUR[r]) for r in REGIONS},
        jitter={m: u(0.9, 1.1) for m in METABOLITES},
        region_grad={m: u(-0.1, 0.1) for m in METABOLITES},
        met_scale={m: float(np.exp(rng.normal(0, 0.08))) for m in METABOLITES},
        global_scale=float(np.exp(rng.normal(0, 0.10))),
        snr0=u(10, 20),
        fwhm0=u(0.05, 0.08),
        b0_amp=np.array([u(150, 350), u(100, 250), u(100, 250), u(80, 200)]),
        lipid_amp=u(50, 300),
        shells=(u(1, 3), u(3, 7), u(4, 6)),
        tau=u(0.3, 1.0),
        mri_snr=u(30, 50),
        mri_gamma=(u(0.9, 1.1), u(0.9, 1.1)),
        mri_bias=rng.uniform(-1, 1, (2, 10)),
        sigma_h=u(0.15, 0.3),
        het_mix=rng.standard_normal((len(METABOLITES), 2)),
    )


def _psf_window(os: int) -> np.ndarray:
    """Hamming-weighted disc (|k| <= 32) on the 64x64 centred k-space block."""
    k = np.arange(-GRID // 2, GRID // 2)
    kr = np.hypot(*np.meshgrid(k, k, indexing="ij")) / (GRID / 2)
    return np.where(kr <= 1, 0.54 + 0.46 * np.cos(np.pi * np.minimum(kr, 1)), 0.0)


def _acquire(img: np.ndarray, os: int, window: np.ndarray) -> np.ndarray:
    """Fine (n, n) image -> PSF-limited 64x64 MRSI image (PHANTOM.md §4.2), mean preserved."""
    n = img.shape[-1]
    spec = np.fft.fftshift(np.fft.fft2(img), axes=(-2, -1))
    c = n // 2
    block = spec[..., c - GRID // 2 : c + GRID // 2, c - GRID // 2 : c + GRID // 2]
    # centre the coarse samples on the fine blocks: shift by (os - 1) / 2 fine pixels
    f = np.arange(-GRID // 2, GRID // 2) / n
    ramp = np.exp(2j * np.pi * f * (os - 1) / 2)
    block = block * window * ramp[:, None] * ramp[None, :]
    out = np.fft.ifft2(np.fft.ifftshift(block, axes=(-2, -1))) * (GRID * GRID) / (n * n)
    return np.clip(out.real, 0, None)


def _block(img: np.ndarray, os: int) -> np.ndarray:
    n = img.shape[-1] // os
    return img.reshape(*img.shape[:-2], n, os, n, os).mean(axis=(-3, -1))


def _hot_voxels(x: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """With p = 0.3 per 2-D map keep 1-3 rim voxels at 1.5-3x the map median (in place)."""
    from scipy import ndimage

    for k in range(x.shape[-1]):
        mk = mask[..., k]
        draw = rng.random(3)
        if not mk.any() or draw[0] >= 0.3:
            continue
        rim = np.argwhere(mk & ~ndimage.binary_erosion(mk))
        n = 1 + int(draw[1] * 3)
        med = float(np.median(x[..., k][mk]))
        for i, j in rim[rng.choice(len(rim), size=min(n, len(rim)), replace=False)]:
            x[i, j, k] = med * (1.5 + 1.5 * draw[2])


class _Subject:
    """Computes one subject on the fine grid, slice by slice."""

    def __init__(self, index: int, seed: int, oversample: int) -> None:
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))
        self.tpl = _template()
        self.d = _draw(self.rng, self.tpl)
        self.os = oversample
        d = self.d
        self.pivot = np.array([0.0, -17.0, 15.0])
        # subject (scanner) mm -> MNI-aligned mm:  y = M (x - p) + p + t
        self.m = d.rot @ np.diag(d.scale)
        self.t = d.shift
        x_c = np.linalg.solve(self.m, d.centre - self.pivot - self.t) + self.pivot
        k_c = int(np.floor((x_c[2] - SLAB_Z0) / VOXEL_MM[2]))
        self.first = int(np.clip(k_c - N_SLICES // 2, 0, SLAB_SLICES - N_SLICES))
        self.affine = mrsi_affine(self.first)
        # tumour fields on a local 1.5 mm grid around the centre
        self.half = d.radius + d.infil + d.edema_reach + 15.0
        n = int(np.ceil(2 * self.half / 1.5)) + 1
        self.local_shape = (n, n, n)
        self.boundary = _smooth_field(self.rng, self.local_shape, 3.0 / 1.5)
        self.het = np.stack(
            [_smooth_field(self.rng, self.local_shape, 4.5 / 1.5) for _ in range(2)]
        )
        self.noise_rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([seed, index, 1]))
        )

    # ---- coordinates
    def fine_points(self, k: int) -> np.ndarray:
        """Subject mm of the fine-grid points of exported slice k, shape (3, os, n, n)."""
        n = GRID * self.os
        step = FOV_MM / n
        xs = FOV_CENTRE[0] - FOV_MM / 2 + (np.arange(n) + 0.5) * step
        ys = FOV_CENTRE[1] - FOV_MM / 2 + (np.arange(n) + 0.5) * step
        z0 = SLAB_Z0 + (self.first + k) * VOXEL_MM[2]
        zs = z0 + (np.arange(self.os) + 0.5) * VOXEL_MM[2] / self.os
        z, x, y = np.meshgrid(zs, xs, ys, indexing="ij")
        return np.stack([x, y, z]).astype(np.float32)

    def to_aligned(self, pts: np.ndarray) -> np.ndarray:
        flat = pts.reshape(3, -1)
        y = self.m @ (flat - self.pivot[:, None]) + (self.pivot + self.t)[:, None]
        return y.astype(np.float32).reshape(pts.shape)

    def to_template(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Aligned mm -> template mm (mass effect, ventricles, elastic); also returns r."""
        d = self.d
        c = d.centre.astype(np.float32)[:, None]
        flat = y.reshape(3, -1)
        v = flat - c
        r = np.sqrt((v**2).sum(0)) + 1e-6
        # mass effect (PHANTOM.md §3): u = k R exp(-(r-R)/15) r^ outside, k r r^ inside
        mag = np.where(
            r > d.radius, d.mass_k * d.radius * np.exp(-(r - d.radius) / 15.0), d.mass_k * r
        )
        src = flat - v / r * mag
        # ventricle enlargement: push away from the lateral ventricles
        for vc in ((-14.0, -10.0, 18.0), (14.0, -10.0, 18.0)):
            w = src - np.array(vc, dtype=np.float32)[:, None]
            dd = np.sqrt((w**2).sum(0)) + 1e-6
            src = src - w / dd * (d.vent_push * np.exp(-(dd**2) / (2 * 15.0**2)))
        # elastic displacement, sampled on its 4 mm grid
        ev = (src - _ELASTIC_ORIGIN.astype(np.float32)[:, None]) / _ELASTIC_STEP
        src = src + np.stack([_sample(d.elastic[i], ev) for i in range(3)])
        return src.reshape(y.shape), r.reshape(y.shape[1:])

    def local(self, field: np.ndarray, y: np.ndarray) -> np.ndarray:
        lv = (y.reshape(3, -1) - (self.d.centre - self.half)[:, None]) / 1.5
        return _sample(field, lv).reshape(y.shape[1:])

    # ---- fine-grid content of one slice
    def slice_fine(self, k: int) -> dict[str, np.ndarray]:
        d, tpl = self.d, self.tpl
        pts = self.fine_points(k)
        y = self.to_aligned(pts)
        src, r = self.to_template(y)
        vox = (tpl.inv_affine[:3, :3] @ src.reshape(3, -1) + tpl.inv_affine[:3, 3:4]).astype(
            np.float32
        )
        gm = _sample(tpl.gm, vox).reshape(r.shape)
        wm = _sample(tpl.wm, vox).reshape(r.shape)
        t1 = _sample(tpl.t1, vox).reshape(r.shape)
        brain = (t1 > 0.02).astype(np.float32)
        csf = np.clip(1.0 - gm - wm, 0, 1) * brain
        dist = _sample(tpl.dist, vox / 2.0, cval=60.0).reshape(r.shape)
        # tumour soft labels (PHANTOM.md §3), irregular boundary from a 2-4 mm field
        rr = r + 2.0 * self.local(self.boundary, y)
        w = 1.5
        r_nec, r_rim = d.r_necrosis, max(d.r_necrosis + d.rim, 0.5 * d.radius)
        r_rim = min(r_rim, d.radius)
        r_inf = d.radius + d.infil
        s_nec = _sigmoid((r_nec - rr) / w) if r_nec > 0 else np.zeros_like(rr)
        s_rim = _sigmoid((r_rim - rr) / w)
        s_inf = _sigmoid((r_inf - rr) / w)
        edema = _sigmoid((d.edema_reach * wm - (rr - r_inf)) / w) * (rr > r_inf - 3 * w)
        lab = {
            "necrosis": s_nec * brain,
            "rim": (s_rim - s_nec) * brain,
            "infiltration": (s_inf - s_rim) * brain,
            "edema": np.clip(edema - s_inf, 0, 1) * brain,
        }
        tum = sum(lab.values())
        het = np.stack([self.local(self.het[i], y) for i in range(2)])
        out: dict[str, np.ndarray] = {"gm": gm, "wm": wm, "csf": csf, "brain": brain, **lab}
        yn = np.clip(y[1] / 90.0, -1, 1)
        for i, m in enumerate(METABOLITES):
            healthy = (
                (gm * CONC_GM[m] + wm * CONC_WM[m]) * d.jitter[m] * (1 + d.region_grad[m] * yn)
            )
            g = d.het_mix[i, 0] * het[0] + d.het_mix[i, 1] * het[1]
            g /= np.hypot(*d.het_mix[i])
            h = np.exp(d.sigma_h * g)
            mod = 1.0 + sum(lab[reg] * (d.factors[reg][m] * h - 1.0) for reg in REGIONS)
            out[m] = np.clip(healthy * mod, 0, None)
        # lipid shells outside the brain (PHANTOM.md §4.5): CSF gap, marrow, scalp fat
        gap, skull, scalp = d.shells
        marrow = _sigmoid((dist - gap) / 0.7) * _sigmoid((gap + skull - dist) / 0.7)
        fat = _sigmoid((dist - gap - skull) / 0.7) * _sigmoid((gap + skull + scalp - dist) / 0.7)
        out["lipid"] = (0.3 * marrow + fat) * (1 - brain) * d.lipid_amp * CONC_WM["NAA"]
        # MRI (PHANTOM.md §3): template T1 / tissue-weighted FLAIR, tumour appearance, shells
        t1_img = t1 * (1 - tum) + sum(lab[reg] * d.t1_int[reg] for reg in REGIONS)
        flair = (gm * 1.0 + wm * 0.8 + csf * 0.15) * (1 - tum)
        flair = flair + sum(lab[reg] * d.flair_int[reg] for reg in REGIONS)
        out["t1"] = t1_img + (1 - brain) * (1.2 * fat + 0.15 * marrow)
        out["flair"] = flair + (1 - brain) * (0.7 * fat + 0.15 * marrow)
        out["y"] = y
        # average the sub-slices (boxcar slice profile)
        return {key: v.mean(axis=-3) for key, v in out.items()}
