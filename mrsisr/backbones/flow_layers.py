"""The invertible layers of the conditional flow: ActNorm, 1x1 convolution, injector, coupling.

[`ConditionalFlow`][mrsisr.backbones.flownet.ConditionalFlow] stacks these. Scales are bounded,
`exp(2 sigmoid(a) - 1)`; the condition network of every injector and coupling brings the condition
image down to its level's resolution. ActNorm extends nflows' (data-dependent initialisation
on the first training batch); the 1x1 convolution is a plain orthogonally initialised weight
matrix (no LU factorisation, which would change the parameter count).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from nflows.transforms.base import Transform
from nflows.transforms.normalization import ActNorm as _NflowsActNorm
from torch import Tensor, nn

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "AffineInjector",
    "ConditionNet",
    "InvertibleConv1x1",
    "bounded_log_scale",
]


def bounded_log_scale(a: Tensor, clamp: float = 1.0) -> Tensor:
    """Map unconstrained network outputs to a bounded log-scale, `clamp * (2 sigmoid(a) - 1)`.

    The scale `exp(.)` then lies in `[exp(-clamp), exp(clamp)]`.

    Args:
        a: Unconstrained values, any shape.
        clamp: Bound of the log-scale.

    Returns:
        Log-scales of the same shape, in `(-clamp, clamp)`.
    """
    return clamp * (2.0 * torch.sigmoid(a) - 1.0)


class ActNorm(_NflowsActNorm):
    """nflows' ActNorm (per-channel affine, data-dependent init) with a guard for constant channels.

    On the first forward pass in training mode the scale and shift are set so that the batch's
    activations have zero mean and unit variance per channel. nflows divides by the standard
    deviation as is; a channel that is constant over the batch (masked-out maps) would make that
    infinite, so the standard deviation is floored at `1e-6` here.

    Args:
        features: Number of channels.
    """

    def __init__(self, features: int) -> None:
        super().__init__(features)

    def _initialize(self, inputs: Tensor) -> None:
        if inputs.dim() == 4:
            inputs = inputs.permute(0, 2, 3, 1).reshape(-1, inputs.shape[1])
        with torch.no_grad():
            std = inputs.std(dim=0).clamp_min(1e-6)
            mu = (inputs / std).mean(dim=0)
            self.log_scale.data = -torch.log(std)
            self.shift.data = -mu
            self.initialized.data = torch.tensor(True, dtype=torch.bool)


class InvertibleConv1x1(Transform):
    """Invertible 1x1 convolution (Glow) with a full weight matrix, initialised orthogonal.

    `log|det J| = H * W * log|det W|`.

    Args:
        channels: Number of channels `C`; the weight is `C x C`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels))
        self.weight = nn.Parameter(q)

    def _logabsdet(self, x: Tensor) -> Tensor:
        _, logabsdet = torch.linalg.slogdet(self.weight)
        return (x.shape[2] * x.shape[3] * logabsdet).expand(x.shape[0])

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Apply `W` to every pixel's channel vector.

        Args:
            inputs: `(B, C, H, W)`.
            context: Unused.

        Returns:
            Outputs `(B, C, H, W)` and `log|det J|` `(B,)`.
        """
        c = self.weight.shape[0]
        return F.conv2d(inputs, self.weight.view(c, c, 1, 1)), self._logabsdet(inputs)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Apply `W^-1` (computed in float64 for accuracy).

        Args:
            inputs: `(B, C, H, W)`.
            context: Unused.

        Returns:
            Outputs `(B, C, H, W)` and `-log|det J|` `(B,)`.
        """
        c = self.weight.shape[0]
        w_inv = torch.linalg.inv(self.weight.double()).to(self.weight.dtype)
        return F.conv2d(inputs, w_inv.view(c, c, 1, 1)), -self._logabsdet(inputs)


class ConditionNet(nn.Module):
    """Condition network: the condition image brought to one level's resolution and width.

    Level 0 applies one stride-1 Conv3x3 + LeakyReLU(0.2); level `l >= 1` applies `l` stride-2
    Conv3x3 + LeakyReLU(0.2) layers (so the resolution is divided by `2**l`); both end with a
    Conv3x3 to `out_channels`.

    Args:
        level: Scale level `l` (0 = full resolution).
        cond_channels: Channels of the condition image.
        hidden: Width of the hidden layers (`width / 2` in the paper's flow).
        out_channels: Output channels.
    """

    def __init__(self, level: int, cond_channels: int, hidden: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = cond_channels
        for _ in range(max(level, 1)):
            layers += [
                nn.Conv2d(c_in, hidden, 3, stride=2 if level > 0 else 1, padding=1),
                nn.LeakyReLU(0.2),
            ]
            c_in = hidden
        layers.append(nn.Conv2d(hidden, out_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, cond_img: Tensor) -> Tensor:
        """Encode the condition image.

        Args:
            cond_img: `(B, cond_channels, H, W)`.

        Returns:
            `(B, out_channels, H / 2**level, W / 2**level)`.
        """
        return self.net(cond_img)


def _h_net(in_channels: int, width: int, out_channels: int) -> nn.Sequential:
    """The network `H` of injectors and couplings: Conv3x3-LReLU-Conv3x3-LReLU-Conv3x3."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, width, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, out_channels, 3, padding=1),
    )


def _zero_last(net: nn.Sequential) -> None:
    # Glow/SRFlow practice: start every affine layer at the identity (s = 0, t = 0).
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)


class AffineInjector(Transform):
    """Affine injector: `y = x * exp(s) + t` with `(s, t) = H(C(cond))` from the condition only.

    Args:
        channels: Channels `C` of the flow at this level.
        cond_channels: Channels of the condition image.
        width: Width of `H`; the condition network is `width // 2` wide.
        level: Scale level of the condition network.
        clamp: Bound of the log-scale.
    """

    def __init__(
        self, channels: int, cond_channels: int, width: int, level: int, clamp: float = 1.0
    ) -> None:
        super().__init__()
        self.channels = channels
        self.clamp = clamp
        self.cond_net = ConditionNet(level, cond_channels, width // 2, channels)
        self.h = _h_net(channels, width, 2 * channels)
        _zero_last(self.h)

    def _scale_shift(self, context: Tensor) -> tuple[Tensor, Tensor]:
        st = self.h(self.cond_net(context))
        return bounded_log_scale(st[:, : self.channels], self.clamp), st[:, self.channels :]

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Apply the injector.

        Args:
            inputs: `(B, C, h, w)`.
            context: Condition image `(B, cond_channels, H, W)`.

        Returns:
            Outputs `(B, C, h, w)` and `log|det J|` `(B,)`.
        """
        log_s, t = self._scale_shift(context)
        return inputs * torch.exp(log_s) + t, log_s.flatten(1).sum(1)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Invert the injector.

        Args:
            inputs: `(B, C, h, w)`.
            context: Condition image `(B, cond_channels, H, W)`.

        Returns:
            Outputs `(B, C, h, w)` and `-log|det J|` `(B,)`.
        """
        log_s, t = self._scale_shift(context)
        return (inputs - t) * torch.exp(-log_s), -log_s.flatten(1).sum(1)


class AffineCoupling(Transform):
    """Conditional affine coupling: `(x1, cond)` scale and shift `x2`, then the halves swap.

    `(s, t) = H([x1, C(cond)])`, `y2 = x2 * exp(s) + t`; the output is `[y2, x1]` (halves swapped
    so that the next coupling transforms the other half).

    Args:
        channels: Channels `C` of the flow at this level (even).
        cond_channels: Channels of the condition image.
        width: Width of `H`; the condition network is `width // 2` wide.
        level: Scale level of the condition network.
        clamp: Bound of the log-scale.
    """

    def __init__(
        self, channels: int, cond_channels: int, width: int, level: int, clamp: float = 1.0
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"AffineCoupling needs an even number of channels, got {channels}")
        self.half = channels // 2
        self.clamp = clamp
        self.cond_net = ConditionNet(level, cond_channels, width // 2, self.half)
        self.h = _h_net(channels, width, channels)
        _zero_last(self.h)

    def _scale_shift(self, x1: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        st = self.h(torch.cat([x1, self.cond_net(context)], dim=1))
        return bounded_log_scale(st[:, : self.half], self.clamp), st[:, self.half :]

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Apply the coupling.

        Args:
            inputs: `(B, C, h, w)`.
            context: Condition image `(B, cond_channels, H, W)`.

        Returns:
            Outputs `(B, C, h, w)` and `log|det J|` `(B,)`.
        """
        x1, x2 = inputs[:, : self.half], inputs[:, self.half :]
        log_s, t = self._scale_shift(x1, context)
        y2 = x2 * torch.exp(log_s) + t
        return torch.cat([y2, x1], dim=1), log_s.flatten(1).sum(1)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Invert the coupling.

        Args:
            inputs: `(B, C, h, w)`.
            context: Condition image `(B, cond_channels, H, W)`.

        Returns:
            Outputs `(B, C, h, w)` and `-log|det J|` `(B,)`.
        """
        y2, x1 = inputs[:, : self.half], inputs[:, self.half :]
        log_s, t = self._scale_shift(x1, context)
        x2 = (y2 - t) * torch.exp(-log_s)
        return torch.cat([x1, x2], dim=1), -log_s.flatten(1).sum(1)
