"""Filter Scaling (FS): convolution weights modulated per (output, input) filter pair.

Filter Scaling (Dong et al. 2022b, MUNet-FS) conditions a convolution on a scalar, here the
resolution of the low-resolution input. A small MLP maps the scalar to one scale per
(output, input) filter pair, `C_out * C_in` numbers, and the convolution runs with

    W'[o, i, :, :] = W[o, i, :, :] * FS(r)[o, i]

so each scale is shared over the kernel taps (and over every sample that has the same `r`).

**Which resolution value.** The authors feed the raw half size of the low-resolution k-space block,
`d` (their `lowRes`, 4..16 for LR matrices 8..32, not normalised, not the upscaling factor).
[`Condition`][mrsisr.types.Condition] carries the upscaling factor `s = 64 / L`, so we feed
`d = L / 2 = 32 / s` ([`resolution_value`][mrsisr.conditioning.filter_scaling.resolution_value]):
the same number the authors' MLP saw, so a network trained here sees the input range of the
original (4..16 for s in 2..8).

**Metabolite embedding.** The `_Met` variant of the authors (the one whose f = 16 network has the
27.5M parameters of the FTDDM paper's Table 1) gives the MLP a second input: a learned 3-d
embedding of the metabolite (7 metabolites), passed through its own 4-layer MLP; both latents are
concatenated and mapped by Linear(2L, 2L)-LReLU-Linear(2L, C_out * C_in). Set
`num_metabolites = 0` for the plain variant: 4 layers, then Linear(L, C_out * C_in).

**Batches with different values.** A batch whose samples share `r` (and metabolite) uses one
ordinary convolution; otherwise the convolution runs per sample as a grouped convolution with
`groups = B`. Both give the same result for each sample.

Examples:
    >>> import torch
    >>> from mrsisr.conditioning.filter_scaling import FilterScaledConv2d
    >>> conv = FilterScaledConv2d(2, 4, 3)
    >>> x = torch.randn(3, 2, 8, 8)
    >>> conv(x, torch.tensor([4.0, 8.0, 16.0])).shape
    torch.Size([3, 4, 8, 8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrsisr.registries import CONDITIONING

__all__ = [
    "FilterScaling",
    "FilterScaledConv2d",
    "mlp4",
    "resolution_value",
]


def resolution_value(scale: Tensor, size: int = 64) -> Tensor:
    """Return the half low-resolution size `d = size / (2 s)` that Filter Scaling is fed.

    Args:
        scale: Upscaling factors `s = size / L`, shape `(B,)`.
        size: High-resolution matrix size (64 in the paper).

    Returns:
        `d` as float, shape `(B,)` (4..16 for `s` in 2..8 at size 64).
    """
    return size / (2.0 * scale.to(torch.float32))


def mlp4(in_features: int, width: int) -> nn.Sequential:
    """Build the 4-layer mapping MLP of Filter Scaling and the sharpness CIN.

    Four `Linear -> LeakyReLU(0.2)` layers: `in_features -> width -> width -> width -> width`.

    Args:
        in_features: Size of the input vector (1 for a scalar).
        width: Hidden and output width.

    Returns:
        The MLP, mapping `(B, in_features)` to `(B, width)`.
    """
    layers: list[nn.Module] = []
    for i in range(4):
        layers += [nn.Linear(in_features if i == 0 else width, width), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


class FilterScaling(nn.Module):
    """MLP of the resolution value (and metabolite) giving one scale per (out, in) filter pair.

    Args:
        in_channels: `C_in` of the modulated convolution.
        out_channels: `C_out` of the modulated convolution.
        latent_dim: Width `L` of the mapping MLP (32 in the paper).
        num_metabolites: Number of metabolites of the embedding (7 in the `_Met` variant);
            0 builds the plain variant without a metabolite input.
        metabolite_dim: Size of the metabolite embedding (3 in the paper).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        latent_dim: int = 32,
        num_metabolites: int = 0,
        metabolite_dim: int = 3,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_metabolites = num_metabolites
        self.mapping = mlp4(1, latent_dim)
        n = out_channels * in_channels
        if num_metabolites > 0:
            self.embedding = nn.Embedding(num_metabolites, metabolite_dim)
            self.met_mapping = mlp4(metabolite_dim, latent_dim)
            self.head = nn.Sequential(
                nn.Linear(2 * latent_dim, 2 * latent_dim),
                nn.LeakyReLU(0.2),
                nn.Linear(2 * latent_dim, n),
            )
        else:
            self.head = nn.Sequential(nn.Linear(latent_dim, n))
        # Start near W' = W: the convolution behaves like a plain one at initialisation.
        nn.init.ones_(self.head[-1].bias)

    def forward(self, r: Tensor, metabolite: Tensor | None = None) -> Tensor:
        """Compute the scales.

        Args:
            r: Resolution value per sample, `(B,)` (see
                [`resolution_value`][mrsisr.conditioning.filter_scaling.resolution_value]).
            metabolite: Integer metabolite codes `(B,)` in `[0, num_metabolites)`, used only by
                the `_Met` variant. `None` there feeds a zero embedding (metabolite-agnostic);
                train and test the same way.

        Returns:
            Scales of shape `(B, C_out, C_in)`.
        """
        h = self.mapping(r.reshape(-1, 1).to(self.head[-1].weight.dtype))
        if self.num_metabolites > 0:
            if metabolite is None:
                e = h.new_zeros(h.shape[0], self.embedding.embedding_dim)
            else:
                e = self.embedding(metabolite.reshape(-1).to(h.device))
            h = torch.cat([h, self.met_mapping(e)], dim=1)
        return self.head(h).reshape(-1, self.out_channels, self.in_channels)


@CONDITIONING.register("filter_scaling")
class FilterScaledConv2d(nn.Module):
    """Filter Scaling: a conv whose weights an MLP of the resolution scales per filter pair.

    A drop-in convolution for any backbone: build it like `nn.Conv2d` and call it with the
    per-sample resolution value. The MLP (a
    [`FilterScaling`][mrsisr.conditioning.filter_scaling.FilterScaling]) gives `C_out * C_in`
    scales per sample; the weight `(C_out, C_in, k, k)` is multiplied by them, broadcast over the
    kernel taps.

    Args:
        in_channels: Input channels `C_in`.
        out_channels: Output channels `C_out`.
        kernel_size: Square kernel size.
        padding: Zero padding; `None` gives "same" padding `kernel_size // 2`.
        bias: Add a learned bias (not scaled). MUNet's convolutions have none.
        latent_dim: Width of the MLP (32 in the paper).
        num_metabolites: Metabolite embedding size of the `_Met` variant, 0 for plain FS.
        metabolite_dim: Dimension of the metabolite embedding.

    Attributes:
        kind: `"conv"`: a convolution called with the resolution value, the capability MUNet
            looks for.
    """

    kind = "conv"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int | None = None,
        bias: bool = False,
        latent_dim: int = 32,
        num_metabolites: int = 0,
        metabolite_dim: int = 3,
    ) -> None:
        super().__init__()
        self.padding = kernel_size // 2 if padding is None else padding
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.fs = FilterScaling(
            in_channels, out_channels, latent_dim, num_metabolites, metabolite_dim
        )

    def effective_weight(self, r: Tensor, metabolite: Tensor | None = None) -> Tensor:
        """Return the modulated weights `W * FS(r)` of each sample.

        Args:
            r: Resolution value per sample, `(B,)`.
            metabolite: Metabolite codes `(B,)` or `None`.

        Returns:
            `(B, C_out, C_in, k, k)`.
        """
        scales = self.fs(r, metabolite)
        return self.weight.unsqueeze(0) * scales[..., None, None]

    def forward(self, x: Tensor, r: Tensor, metabolite: Tensor | None = None) -> Tensor:
        """Convolve each sample with its own modulated weights.

        Args:
            x: Input `(B, C_in, H, W)`.
            r: Resolution value per sample, `(B,)`.
            metabolite: Metabolite codes `(B,)` or `None`.

        Returns:
            `(B, C_out, H', W')`.
        """
        b = x.shape[0]
        r = r.reshape(-1).to(x.device)
        if r.numel() == 1 and b > 1:
            r = r.expand(b)
        keys = r if metabolite is None else torch.stack([r, metabolite.reshape(-1).to(r)], 1)
        if bool((keys == keys[:1]).all()):
            # One value for the whole batch: one MLP call, one ordinary convolution.
            w = self.effective_weight(r[:1], None if metabolite is None else metabolite[:1])[0]
            return F.conv2d(x, w, self.bias, padding=self.padding)
        w = self.effective_weight(r, metabolite)  # (B, C_out, C_in, k, k)
        out = F.conv2d(
            x.reshape(1, b * x.shape[1], *x.shape[2:]),
            w.reshape(b * w.shape[1], *w.shape[2:]),
            None,
            padding=self.padding,
            groups=b,
        )
        out = out.reshape(b, w.shape[1], *out.shape[2:])
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out
