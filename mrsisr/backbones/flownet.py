"""The conditional multi-scale normalizing flow of FTDDM and the Flow Enhancer.

An SRFlow-like invertible network (SPEC §4) that maps an image `x` `(B, C, H, W)` to a latent
`z` of the same number of elements, conditioned on an image stack (mask, LR, T1, FLAIR):

```text
level 0 (C x H x W):  K0 x [ActNorm, affine injector]
level l = 1..L:       squeeze -> ActNorm -> 1x1 conv -> Kl x [ActNorm, 1x1 conv, affine injector,
                      conditional affine coupling] -> split half the channels off to z
                      (no split after the last level)
```

Every injector and coupling owns a condition network (strided 3x3 convolutions with LeakyReLU
down to its level's resolution, `width / 2` wide, then a 3x3 convolution) and a network
`H` (three 3x3 convolutions, `width` wide). Scales are bounded, `exp(2 sigmoid(a) - 1)`, which
keeps the flow numerically tame. The base distribution is a learnable diagonal Gaussian with one
mean and one log-standard-deviation per latent element.

ActNorm (with data-dependent initialisation on the first training batch) and the squeeze come
from nflows; the injector, the bounded coupling, the orthogonally initialised 1x1 convolution
(a plain weight matrix, no LU: nflows' `OneByOneConvolution` carries an LU factorisation and a
permutation buffer, which changes the parameter count) and the split with the learnable prior
are written here.

Examples:
    >>> import torch
    >>> from mrsisr.backbones.flownet import ConditionalFlow
    >>> flow = ConditionalFlow(width=8, blocks=(1, 1, 1), levels=2, image_size=8).eval()
    >>> x, cond = torch.rand(2, 1, 8, 8), torch.rand(2, 4, 8, 8)
    >>> z, logdet = flow.encode(x, cond)
    >>> z.shape
    torch.Size([2, 64])
    >>> bool(torch.allclose(flow.decode(z, cond), x, atol=1e-5))
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from nflows.transforms.base import CompositeTransform, Transform
from nflows.transforms.normalization import ActNorm as _NflowsActNorm
from nflows.transforms.reshape import SqueezeTransform
from torch import Tensor, nn

from mrsisr.errors import RecipeError
from mrsisr.registries import BACKBONES

__all__ = [
    "ActNorm",
    "AffineCoupling",
    "AffineInjector",
    "ConditionNet",
    "ConditionalFlow",
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


@BACKBONES.register("conditional_flow")
class ConditionalFlow(nn.Module):
    """Conditional multi-scale normalizing flow with a learnable prior (FTDDM, Flow Enhancer).

    At the paper's size (`width=128`, `blocks=(12, 12, 12, 12)`, 4 condition channels) it has
    17,554,444 parameters; at `width=192` (the Flow Enhancer) 37,604,620.

    Args:
        in_channels: Channels of the modelled image.
        cond_channels: Channels of the condition image (mask, LR, T1, FLAIR = 4 for FTDDM).
        width: Width of the networks `H`; the condition networks are `width // 2` wide.
        blocks: Steps per level: `blocks[0]` injector-only steps at full resolution, then
            `blocks[l]` steps at level `l = 1..levels`; length `levels + 1`.
        levels: Number of squeeze levels `L`.
        image_size: Side of the (square) modelled image; must be divisible by `2**levels`.
        clamp: Bound of every affine log-scale (`exp(clamp * (2 sigmoid - 1))`).

    Raises:
        RecipeError: If `blocks` does not have `levels + 1` entries or the image size does not
            divide.
    """

    def __init__(
        self,
        in_channels: int = 1,
        cond_channels: int = 4,
        width: int = 128,
        blocks: Sequence[int] = (12, 12, 12, 12),
        levels: int = 3,
        image_size: int = 64,
        clamp: float = 1.0,
    ) -> None:
        super().__init__()
        blocks = tuple(int(b) for b in blocks)
        if len(blocks) != levels + 1:
            raise RecipeError(
                f"conditional_flow: `blocks` needs levels + 1 = {levels + 1} entries, "
                f"got {list(blocks)}"
            )
        if levels < 1 or image_size % (2**levels):
            raise RecipeError(
                f"conditional_flow: `image_size` {image_size} must be divisible by "
                f"2**levels = {2**levels} (levels >= 1)"
            )
        self.in_channels = in_channels
        self.cond_channels = cond_channels
        self.image_size = image_size
        self.levels = levels

        def step_kwargs(level: int) -> dict[str, int | float]:
            return {"cond_channels": cond_channels, "width": width, "level": level, "clamp": clamp}

        stages: list[Transform] = []
        ops: list[Transform] = []
        for _ in range(blocks[0]):
            ops += [ActNorm(in_channels), AffineInjector(in_channels, **step_kwargs(0))]
        stages.append(CompositeTransform(ops))

        c, h = in_channels, image_size
        self._split_shapes: list[tuple[int, int, int]] = []
        for level in range(1, levels + 1):
            c, h = 4 * c, h // 2
            ops = [SqueezeTransform(2), ActNorm(c), InvertibleConv1x1(c)]
            for _ in range(blocks[level]):
                ops += [
                    ActNorm(c),
                    InvertibleConv1x1(c),
                    AffineInjector(c, **step_kwargs(level)),
                    AffineCoupling(c, **step_kwargs(level)),
                ]
            stages.append(CompositeTransform(ops))
            if level < levels:  # split: the second half leaves as latent
                self._split_shapes.append((c - c // 2, h, h))
                c = c // 2
        self._split_shapes.append((c, h, h))  # what is left after the last level
        self.stages = nn.ModuleList(stages)

        self.dim = in_channels * image_size * image_size
        self.prior_mu = nn.Parameter(torch.zeros(self.dim))
        self.prior_log_sigma = nn.Parameter(torch.zeros(self.dim))

    # ------------------------------------------------------------------ transforms
    def encode(self, x: Tensor, cond_img: Tensor) -> tuple[Tensor, Tensor]:
        """Map images to latents: `z = F(x; cond)`.

        Args:
            x: Images `(B, in_channels, image_size, image_size)`.
            cond_img: Condition image `(B, cond_channels, image_size, image_size)`.

        Returns:
            `z` `(B, D)` with `D = in_channels * image_size**2`, and `log|det dz/dx|` `(B,)`.
        """
        h, logdet = x, x.new_zeros(x.shape[0])
        zs: list[Tensor] = []
        for level, stage in enumerate(self.stages):
            h, ld = stage(h, context=cond_img)
            logdet = logdet + ld
            if 1 <= level < self.levels:
                keep = h.shape[1] // 2
                zs.append(h[:, keep:].flatten(1))
                h = h[:, :keep]
        zs.append(h.flatten(1))
        return torch.cat(zs, dim=1), logdet

    def decode(self, z: Tensor, cond_img: Tensor) -> Tensor:
        """Map latents back to images: `x = F^-1(z; cond)`.

        Args:
            z: Latents `(B, D)`.
            cond_img: Condition image `(B, cond_channels, image_size, image_size)`.

        Returns:
            Images `(B, in_channels, image_size, image_size)`.
        """
        x, _ = self.decode_with_logdet(z, cond_img)
        return x

    def decode_with_logdet(self, z: Tensor, cond_img: Tensor) -> tuple[Tensor, Tensor]:
        """Invert the flow and return `log|det dx/dz|` as well.

        Args:
            z: Latents `(B, D)`.
            cond_img: Condition image `(B, cond_channels, image_size, image_size)`.

        Returns:
            Images `(B, in_channels, image_size, image_size)` and `log|det dx/dz|` `(B,)`.
        """
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"conditional_flow: z must be (B, {self.dim}), got {tuple(z.shape)}")
        sizes = [math.prod(s) for s in self._split_shapes]
        chunks = z.split(sizes, dim=1)
        shapes = self._split_shapes
        pieces = [p.reshape(z.shape[0], *s) for p, s in zip(chunks, shapes, strict=True)]
        h = pieces.pop()
        logdet = z.new_zeros(z.shape[0])
        for level in range(len(self.stages) - 1, -1, -1):
            if 1 <= level < self.levels:
                h = torch.cat([h, pieces.pop()], dim=1)
            h, ld = self.stages[level].inverse(h, context=cond_img)
            logdet = logdet + ld
        return h, logdet

    # ------------------------------------------------------------------ densities
    @property
    def prior_sigma(self) -> Tensor:
        """Standard deviations of the learnable prior, `(D,)`.

        Floored at `1e-6` as in the authors' code: pixels outside the quality mask are exactly
        zero in the training targets, and an unfloored prior could shrink towards them forever.
        """
        return torch.exp(self.prior_log_sigma) + 1e-6

    def log_prob(self, x: Tensor, cond_img: Tensor) -> Tensor:
        """Log-likelihood `log p(x | cond)` in nats (change of variables, Eq. 8).

        Args:
            x: Images `(B, in_channels, image_size, image_size)`.
            cond_img: Condition image `(B, cond_channels, image_size, image_size)`.

        Returns:
            `(B,)` log-likelihoods.
        """
        z, logdet = self.encode(x, cond_img)
        sigma = self.prior_sigma
        log_pz = -0.5 * (((z - self.prior_mu) / sigma) ** 2 + math.log(2 * math.pi))
        log_pz = log_pz - torch.log(sigma)
        return log_pz.sum(1) + logdet

    def forward(self, x: Tensor, cond_img: Tensor) -> Tensor:
        """Same as [`log_prob`][mrsisr.backbones.flownet.ConditionalFlow.log_prob].

        Args:
            x: Images `(B, in_channels, image_size, image_size)`.
            cond_img: Condition image `(B, cond_channels, image_size, image_size)`.

        Returns:
            `(B,)` log-likelihoods.
        """
        return self.log_prob(x, cond_img)

    def nll_bits_per_dim(self, x: Tensor, cond_img: Tensor, n_bins: int = 256) -> Tensor:
        """Negative log-likelihood in bits per dimension, as the authors report it.

        The images are treated as quantised to `n_bins` levels on [0, 1], which adds
        `log(n_bins)` nats per pixel (a constant that does not change the gradients).

        Args:
            x: Images `(B, in_channels, image_size, image_size)`.
            cond_img: Condition image `(B, cond_channels, image_size, image_size)`.
            n_bins: Quantisation levels.

        Returns:
            `(B,)` bits per dimension.
        """
        log_p = self.log_prob(x, cond_img) - self.dim * math.log(n_bins)
        return -log_p / (self.dim * math.log(2.0))

    # ------------------------------------------------------------------ sampling
    def sample_latent(
        self,
        batch_size: int,
        tau: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw tempered latents `z = mu + tau * sigma * eps`, `eps ~ N(0, I)`.

        Args:
            batch_size: Number of latents.
            tau: Temperature `tau_f`; 0 gives the prior mean.
            generator: Optional random generator.

        Returns:
            `(batch_size, D)` latents.
        """
        mu = self.prior_mu.expand(batch_size, -1)
        if tau == 0:
            return mu
        # Draw on the generator's device so a CPU generator reproduces on any device.
        device = generator.device if generator is not None else mu.device
        eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype)
        eps = eps.to(mu.device)
        return mu + tau * self.prior_sigma * eps

    def sample(
        self,
        cond_img: Tensor,
        tau: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw one image per condition at temperature `tau`.

        Args:
            cond_img: Condition image `(B, cond_channels, image_size, image_size)`.
            tau: Temperature `tau_f` of the prior (0 is deterministic: `z = mu`).
            generator: Optional random generator.

        Returns:
            Images `(B, in_channels, image_size, image_size)`.
        """
        z = self.sample_latent(cond_img.shape[0], tau=tau, generator=generator)
        return self.decode(z, cond_img)

    def inverse(self, z: Tensor, cond_img: Tensor) -> Tensor:
        """Same as [`decode`][mrsisr.backbones.flownet.ConditionalFlow.decode].

        Args:
            z: Latents `(B, D)`.
            cond_img: Condition image `(B, cond_channels, image_size, image_size)`.

        Returns:
            Images `(B, in_channels, image_size, image_size)`.
        """
        return self.decode(z, cond_img)
