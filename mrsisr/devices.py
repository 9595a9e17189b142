"""Devices: turn `--device` into a torch device, and describe the machine for weight cards."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING

from mrsisr.errors import MrsisrError

if TYPE_CHECKING:  # torch is imported on use: `mrsisr --help` stays fast
    import torch

__all__ = ["describe_device", "resolve_device"]


def resolve_device(device: str) -> str:
    """Turn `--device` into a torch device string, or refuse it with one line.

    Args:
        device: `auto` (CUDA when present, else CPU), `cpu`, `cuda`, `cuda:N` or `mps`.

    Returns:
        The device string to use.

    Raises:
        MrsisrError: For a device torch does not know or this machine does not have.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise MrsisrError(
            f"`device` {device}: not a device; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MrsisrError(
                f"`device` {device}: no CUDA device is available here; use `device` cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MrsisrError(
                f"`device` {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise MrsisrError(f"`device` {device}: MPS is not available here; use `device` cpu")
    elif dev.type != "cpu":
        raise MrsisrError(f"`device` {device}: unsupported; use auto, cpu, cuda, cuda:N or mps")
    return str(dev)


def describe_device(device: torch.device) -> str:
    """Describe the machine a run used, for weight cards.

    Args:
        device: The torch device.

    Returns:
        E.g. `cpu (x86_64, 2 threads)` or `NVIDIA H100 80GB HBM3`.
    """
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
