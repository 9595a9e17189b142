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
from nflows.transforms.base import CompositeTransform, Transform
from nflows.transforms.reshape import SqueezeTransform
from torch import Tensor, nn

from mrsisr.backbones.flow_layers import (
    ActNorm,
    AffineCoupling,
    AffineInjector,
    ConditionNet,
    InvertibleConv1x1,
    bounded_log_scale,
)
from mrsisr.errors import RecipeError
from mrsisr.registries import BACKBONES

__all__ = [  # the layers live in mrsisr.backbones.flow_layers
    "ActNorm",
    "AffineCoupling",
    "AffineInjector",
    "ConditionNet",
    "ConditionalFlow",
    "InvertibleConv1x1",
    "bounded_log_scale",
]


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
