"""How the networks run: numeric precision, compilation and the device's fast math modes.

One place for the options that change speed, not the method: `--precision fp32|bf16|fp16`
(autocast, with a gradient scaler for fp16 training), `--compile` (`torch.compile` of every
network, in place, so parameter names and weight files are unchanged), fused Adam on every
device, and TF32 matrix products on NVIDIA GPUs that have them (Ampere or newer). Training
([`Trainer`][mrsisr.train.engine.Trainer]), `mrsisr bench` and `mrsisr sr` all use these helpers.

Examples:
    >>> import torch
    >>> with autocast("cpu", "bf16"):
    ...     y = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    >>> y.dtype
    torch.bfloat16
    >>> grad_scaler("cpu", "fp32") is None
    True
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from mrsisr.errors import MrsisrError
from mrsisr.types import Condition

__all__ = [
    "COMPILE_BACKENDS",
    "PRECISIONS",
    "Accelerated",
    "PrecisionWarning",
    "accelerate",
    "autocast",
    "check_runtime",
    "compile_modules",
    "enable_tf32",
    "native_low_precision",
    "grad_scaler",
    "optimizer_options",
]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Precision name → autocast dtype (`None`: no autocast, plain float32)."""

COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
"""`torch.compile` backends `--compile` accepts: `inductor` generates kernels (the fast one);
`aot_eager` and `eager` only trace, for checking that a model compiles."""


def check_runtime(precision: str = "fp32", compile: str | None = None) -> None:
    """Refuse an unknown precision or compile backend with one line.

    Args:
        precision: `fp32`, `bf16` or `fp16`.
        compile: `None` (no compilation) or one of `COMPILE_BACKENDS`.

    Raises:
        MrsisrError: For an unknown value.
    """
    if precision not in PRECISIONS:
        raise MrsisrError(f"`precision` {precision!r}: use one of {', '.join(PRECISIONS)}")
    if compile is not None and compile not in COMPILE_BACKENDS:
        raise MrsisrError(f"`compile` {compile!r}: use one of {', '.join(COMPILE_BACKENDS)}")


class PrecisionWarning(UserWarning):
    """A precision that this processor can only emulate (the command line prints it on one line)."""


def native_low_precision(precision: str) -> bool | None:
    """Whether this machine's CPU computes `bf16` / `fp16` natively (oneDNN's own check).

    Without native support (e.g. AVX2 only: no `avx512_bf16` or `amx_bf16` in `lscpu`) the
    convolutions are emulated: `bf16` autocast measured about 30 times slower than float32 on
    such a 2-core host (docs/bench.md).

    Args:
        precision: `bf16` or `fp16` (`fp32` is always native).

    Returns:
        `True` or `False`, or `None` when this torch build cannot tell.
    """
    if precision == "fp32":
        return True
    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}
    try:
        return bool(getattr(torch.ops.mkldnn, probe[precision])())
    except (AttributeError, RuntimeError, KeyError):
        return None


_WARNED: set[str] = set()


def _warn_emulated(device: torch.device, precision: str) -> None:
    if device.type != "cpu" or precision == "fp32" or precision in _WARNED:
        return
    if native_low_precision(precision) is False:
        _WARNED.add(precision)
        warnings.warn(
            f"this CPU has no native {precision} arithmetic: `precision` {precision} runs "
            "emulated, many times slower than fp32 (bf16 measured about 30x); use fp32 here",
            PrecisionWarning,
            stacklevel=3,
        )


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a precision on a device (a no-op context for `fp32`).

    On a CPU without native `bf16` / `fp16` arithmetic a
    [`PrecisionWarning`][mrsisr.runtime.PrecisionWarning] says so, once per process.

    Args:
        device: Torch device (or its type).
        precision: `fp32`, `bf16` or `fp16`.

    Returns:
        A context manager.
    """
    check_runtime(precision)
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    _warn_emulated(torch.device(device), precision)
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(device: str | torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 training (fp16 gradients underflow without one), else `None`.

    Args:
        device: Torch device.
        precision: `fp32`, `bf16` or `fp16`.

    Returns:
        A `torch.amp.GradScaler`, or `None` for `fp32` and `bf16`.
    """
    check_runtime(precision)
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def optimizer_options(device: str | torch.device) -> dict[str, Any]:
    """Extra `torch.optim.Adam` arguments: the fused kernel, on CUDA and on CPU.

    The fused kernel updates every parameter in one pass and agrees with Adam's default
    per-parameter loop to float rounding (tested). On CPU its step took 29 ms against 145 ms for
    the loop on the Flow Enhancer's pre-network (934 tensors, 4.1M weights), where the optimiser
    was the largest cost outside the network (`benchmarks/train_speed.py --adam-loop`,
    docs/training.md).

    Args:
        device: Torch device.

    Returns:
        `{"fused": True}`.
    """
    del device  # the same on every device torch's fused Adam supports (CPU, CUDA)
    return {"fused": True}


def enable_tf32(device: str | torch.device) -> bool:
    """Allow TF32 matrix products and convolutions on an NVIDIA GPU that has them (Ampere+).

    Args:
        device: Torch device.

    Returns:
        Whether TF32 was enabled.
    """
    dev = torch.device(device)
    if dev.type != "cuda" or torch.cuda.get_device_capability(dev)[0] < 8:
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


def compile_modules(modules: dict[str, nn.Module] | Any, backend: str | None) -> int:
    """`torch.compile` each network in place (`nn.Module.compile`): names and weights unchanged.

    Args:
        modules: Modules by name, or a pipeline (its `parts()`).
        backend: One of `COMPILE_BACKENDS`, or `None` to do nothing.

    Returns:
        How many modules were compiled.
    """
    if backend is None:
        return 0
    check_runtime(compile=backend)
    if hasattr(modules, "parts"):
        modules = {k: m for k, (m, _) in modules.parts().items()}
    count = 0
    for module in modules.values():
        if isinstance(module, nn.Module) and any(True for _ in module.parameters()):
            module.compile(backend=backend)
            count += 1
    return count


class Accelerated:
    """A pipeline that samples under autocast: the [`Pipeline`][mrsisr.types.Pipeline] contract
    of the one it wraps, with every network evaluation in `precision`.

    The samplers' own arithmetic (the x_t updates, the schedule) stays in float32: autocast only
    lowers matrix products and convolutions, and the output is returned in float32.

    Args:
        pipe: The pipeline.
        precision: `bf16` or `fp16` (`fp32` works too and changes nothing).
        device: Device the pipeline runs on.
    """

    def __init__(self, pipe: Any, precision: str, device: str | torch.device) -> None:
        check_runtime(precision)
        self.pipe, self.precision, self.device = pipe, precision, torch.device(device)
        self.nfe = pipe.nfe
        self.recipe = getattr(pipe, "recipe", None)

    def sample(
        self,
        cond: Condition,
        generator: torch.Generator | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Tensor:
        """Super-resolve a batch under autocast (see [`Pipeline.sample`][mrsisr.types.Pipeline])."""
        with autocast(self.device, self.precision):
            x = self.pipe.sample(cond, generator=generator, progress=progress)
        return x.float()

    def parts(self) -> dict[str, tuple[Any, bool]]:
        """The wrapped pipeline's parts."""
        return self.pipe.parts()

    def training_stages(self) -> list[Any]:
        """The wrapped pipeline's training stages."""
        return self.pipe.training_stages()

    def super_resolve(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped pipeline's map-level `super_resolve`, under autocast."""
        with autocast(self.device, self.precision):
            return self.pipe.super_resolve(*args, **kwargs)

    def eval(self) -> Accelerated:
        """Put the wrapped pipeline in eval mode; returns self."""
        self.pipe.eval()
        return self

    def to(self, *args: Any, **kwargs: Any) -> Accelerated:
        """Move the wrapped pipeline (as `nn.Module.to`); returns self."""
        self.pipe.to(*args, **kwargs)
        return self


def accelerate(
    pipe: Any, device: str | torch.device, precision: str = "fp32", compile: str | None = None
) -> Any:
    """Apply `--precision` and `--compile` to a pipeline for inference.

    Args:
        pipe: The pipeline (in eval mode, on `device`).
        device: Its device.
        precision: `fp32` (returns `pipe` itself), `bf16` or `fp16`.
        compile: A `torch.compile` backend, or `None`.

    Returns:
        The pipeline, or an [`Accelerated`][mrsisr.runtime.Accelerated] wrapper of it.
    """
    check_runtime(precision, compile)
    enable_tf32(device)
    compile_modules(pipe, compile)
    return pipe if precision == "fp32" else Accelerated(pipe, precision, device)
