"""Diffusion training loss and the small helpers the samplers share (SPEC §3).

Everything uses the paper's indexing: `t` in 1..T, `x_t = sqrt(gamma_t) x_0 + sqrt(1 - gamma_t) eps`
(Eq. 2), and every noise, network output and sample is multiplied by the quality mask.

Examples:
    >>> import torch
    >>> from mrsisr.schedules import CosineSchedule
    >>> from mrsisr.diffusion import predict_x0
    >>> s = CosineSchedule()
    >>> x0, eps = torch.full((1, 1, 2, 2), 0.5), torch.randn(1, 1, 2, 2)
    >>> x_t = s.q_sample(x0, torch.tensor([300]), eps)
    >>> torch.allclose(predict_x0(eps, x_t, 300, s), x0, atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch
from torch import Tensor

from mrsisr.types import Condition, Denoiser, Schedule

__all__ = [
    "Progress",
    "LOSS_WEIGHTINGS",
    "diffusion_loss",
    "draw_timesteps",
    "loss_weights",
    "masked_eps",
    "posterior_step",
    "predict_x0",
    "randn",
    "track",
]

Progress = Callable[[int, int], None]
"""A progress callback `progress(done, total)`, called after each sampler step."""

_T = TypeVar("_T")


def randn(
    shape: torch.Size | tuple[int, ...], like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Standard normal noise drawn on the generator's device, then moved next to `like`.

    A CPU generator thus gives the same numbers whatever device the model runs on.

    Args:
        shape: Shape of the noise.
        like: Tensor whose device and dtype the noise takes.
        generator: Optional random generator.

    Returns:
        Noise of `shape`, on `like`'s device and dtype.
    """
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


LOSS_WEIGHTINGS = ("eps", "x0", "min_snr")
"""Accepted values of `loss_weighting`: Eq. 5's plain ε-MSE, constant weight on the x0 error, and
min-SNR-γ (Hang et al. 2023)."""


def loss_weights(
    t: Tensor, schedule: Schedule, weighting: str = "eps", snr_gamma: float = 5.0
) -> Tensor:
    """Per-sample weights of the ε-MSE that turn it into another loss weighting.

    With `SNR(t) = gamma_t / (1 - gamma_t)`, the x0 error is `||x0_hat - x0||^2 =
    ||eps_hat - eps||^2 / SNR(t)`, so:

    - `"eps"`: weight 1, Eq. 5 as the paper trains it;
    - `"x0"`: weight `1 / SNR(t)`, a constant weight on the x0 error;
    - `"min_snr"`: weight `min(SNR(t), snr_gamma) / SNR(t)` (min-SNR-γ for an ε-prediction
      network): the x0 error where `SNR > snr_gamma`, ε-MSE below. In FTDDM's truncated window
      (t <= 100, SNR from about 34 up to 24,000 with the cosine schedule) it equals `snr_gamma`
      times the x0 weighting.

    Args:
        t: Timesteps `(B,)` in 1..T.
        schedule: The noise schedule.
        weighting: One of [`LOSS_WEIGHTINGS`][mrsisr.diffusion.LOSS_WEIGHTINGS].
        snr_gamma: γ of min-SNR-γ.

    Returns:
        Weights `(B,)` in float64-exact then cast to float32, on `t`'s device.

    Raises:
        ValueError: For an unknown weighting or a non-positive `snr_gamma`.
    """
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(
            f"loss_weighting must be one of {', '.join(LOSS_WEIGHTINGS)}, got {weighting!r}"
        )
    if weighting == "eps":
        return torch.ones(t.shape, device=t.device)
    g = schedule.gammas[t.cpu()].double()
    snr = g / (1.0 - g)
    if weighting == "x0":
        w = 1.0 / snr
    else:
        if not snr_gamma > 0:
            raise ValueError(f"snr_gamma must be positive, got {snr_gamma}")
        w = snr.clamp(max=float(snr_gamma)) / snr
    return w.float().to(t.device)


def draw_timesteps(
    n: int,
    t_train: int,
    T: int,
    generator: torch.Generator | None = None,
    low_t_fraction: float = 0.0,
    low_t_max: int = 100,
    device: torch.device | str | None = None,
) -> Tensor:
    """Training timesteps: `U{1, ..., t_train}`, optionally mixed with `U{1, ..., low_t_max}`.

    A full-chain denoiser (DDPM, T = 1000) sees `t <= 100` in only a tenth of its uniform draws,
    yet the last steps of the chain set the fine detail of the answer. With
    `low_t_fraction = f > 0`, each timestep comes from `U{1, ..., low_t_max}` with probability
    `f` and from `U{1, ..., t_train}` otherwise, so the probability of a `t <= low_t_max` is
    `f + (1 - f) low_t_max / t_train`. The loss is not reweighted to undo the mixture: this
    deliberately puts more of the training signal on small `t` (a fine-tuning tool, not the
    paper's Eq. 5).

    Args:
        n: Number of timesteps.
        t_train: Largest timestep of the uniform draw (`1 <= t_train <= T`).
        T: The schedule's number of steps.
        generator: Optional random generator; its device is used for the draw.
        low_t_fraction: Probability, in `[0, 1]`, of a low-`t` draw. At 0 only the uniform
            draw is made, exactly as without this option.
        low_t_max: Largest low timestep (`1 <= low_t_max <= t_train`; only checked, and
            only used, when `low_t_fraction > 0`).
        device: Where to draw without a generator (default: CPU); with one, its device.

    Returns:
        Timesteps `(n,)`, `int64`, on the generator's device (else `device`).

    Raises:
        ValueError: For a `t_train`, `low_t_fraction` or `low_t_max` out of range.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> t = draw_timesteps(10_000, 1000, 1000, g, low_t_fraction=0.5, low_t_max=100)
        >>> bool(t.min() >= 1 and t.max() <= 1000), round((t <= 100).float().mean().item(), 2)
        (True, 0.55)
    """
    if not 1 <= int(t_train) <= T:
        raise ValueError(f"t_train must be in [1, {T}], got {t_train}")
    if not 0.0 <= float(low_t_fraction) <= 1.0:
        raise ValueError(f"low_t_fraction must be in [0, 1], got {low_t_fraction}")
    if float(low_t_fraction) > 0 and not 1 <= int(low_t_max) <= int(t_train):
        raise ValueError(f"low_t_max must be in [1, t_train = {t_train}], got {low_t_max}")
    device = generator.device if generator is not None else torch.device(device or "cpu")
    t = torch.randint(1, int(t_train) + 1, (n,), generator=generator, device=device)
    if float(low_t_fraction) > 0:
        low = torch.randint(1, int(low_t_max) + 1, (n,), generator=generator, device=device)
        pick = torch.rand(n, generator=generator, device=device) < float(low_t_fraction)
        t = torch.where(pick, low, t)
    return t


def diffusion_loss(
    denoiser: Denoiser,
    x0: Tensor,
    cond: Condition,
    schedule: Schedule,
    t_train: int,
    generator: torch.Generator | None = None,
    *,
    weighting: str = "eps",
    snr_gamma: float = 5.0,
    low_t_fraction: float = 0.0,
    low_t_max: int = 100,
) -> Tensor:
    """The epsilon-MSE loss of Eq. 5 with `t ~ U{1, ..., t_train}` and masked noise.

    `t_train = T` trains a DDPM denoiser; `t_train = T_trunc` (100) a truncated one (FTDDM, TDPM).
    The noise is multiplied by `cond.mask`, and so is the network output, so pixels outside the
    mask contribute zero error. The squared error is **averaged over all pixels** (inside and
    outside the mask) and over the batch: the authors' code uses improved-diffusion's
    `mean_flat((eps - eps_theta)^2)` over the whole image, with masked noise and output.

    Args:
        denoiser: The epsilon-predicting network, `denoiser(x_t, t, cond) -> (B, 1, H, W)`.
        x0: Clean maps `(B, 1, H, W)`, zero outside the mask.
        cond: Their conditions.
        schedule: The noise schedule.
        t_train: Largest timestep trained on (`1 <= t_train <= schedule.T`).
        generator: Optional random generator for `t` and the noise.
        weighting: Loss weighting over timesteps (see
            [`loss_weights`][mrsisr.diffusion.loss_weights]); `"eps"` is Eq. 5.
        snr_gamma: γ of the `"min_snr"` weighting.
        low_t_fraction: Share of the batch whose `t` is drawn from `U{1, ..., low_t_max}`
            instead (each map independently, with this probability); 0, the default, is Eq. 5's
            uniform draw and leaves the random stream as it was. See
            [`draw_timesteps`][mrsisr.diffusion.draw_timesteps].
        low_t_max: Largest timestep of the low-`t` draw.

    Returns:
        Scalar loss.
    """
    b = x0.shape[0]
    t = draw_timesteps(
        b, t_train, schedule.T, generator, low_t_fraction, low_t_max, device=x0.device
    )
    t = t.to(x0.device)
    mask = cond.mask.to(x0)
    noise = randn(x0.shape, x0, generator) * mask
    x_t = schedule.q_sample(x0, t, noise)
    eps = denoiser(x_t, t, cond) * mask
    if weighting == "eps":
        return ((eps - noise) ** 2).mean()  # Eq. 5, mean over all pixels (authors' mean_flat)
    per_map = ((eps - noise) ** 2).flatten(1).mean(1)
    return (per_map * loss_weights(t, schedule, weighting, snr_gamma)).mean()


def masked_eps(denoiser: Denoiser, x_t: Tensor, t: int, cond: Condition) -> Tensor:
    """Call the denoiser at one integer timestep for the whole batch and mask its output.

    Args:
        denoiser: The epsilon-predicting network.
        x_t: `(B, 1, H, W)`.
        t: Timestep in 1..T.
        cond: Conditions of the batch.

    Returns:
        `eps_theta(x_t, t) * mask`, `(B, 1, H, W)`.
    """
    tt = torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long)
    return denoiser(x_t, tt, cond).to(x_t.dtype) * cond.mask.to(x_t)


def predict_x0(eps: Tensor, x_t: Tensor, t: int | Tensor, schedule: Schedule) -> Tensor:
    """Invert Eq. 2 for `x_0`: `x0_hat = (x_t - sqrt(1 - gamma_t) eps) / sqrt(gamma_t)`.

    Coefficients are computed in float64 and cast, so `t = T` (`gamma_T = 2.4e-9` for the cosine
    schedule) stays finite.

    Args:
        eps: Noise prediction `(B, C, H, W)`.
        x_t: Noisy maps `(B, C, H, W)`.
        t: One timestep for the batch, or per-sample timesteps `(B,)`.
        schedule: The noise schedule.

    Returns:
        `x0_hat`, shaped and typed like `x_t`.
    """
    g = schedule.gammas[torch.as_tensor(t, dtype=torch.long).cpu()]
    shape = (-1,) + (1,) * (x_t.ndim - 1) if g.ndim else ()
    a = (1.0 / g.sqrt()).to(x_t).reshape(shape)
    b = ((1.0 - g) / g).sqrt().to(x_t).reshape(shape)
    return a * x_t - b * eps


def posterior_step(
    x_t: Tensor,
    x0_hat: Tensor,
    gamma_t: float,
    gamma_prev: float,
    noise: Tensor | None,
    *,
    tau: float = 1.0,
    variance: str = "small",
) -> Tensor:
    """One ancestral step from `x_t` to `x_prev` given an `x_0` estimate (Eq. 12).

    With `beta = 1 - gamma_t / gamma_prev` (the schedule's `beta_t` for consecutive steps, the
    respaced beta otherwise) the step is the posterior mean of `q(x_prev | x_t, x0_hat)`,
    `c0 x0_hat + ct x_t` with `c0 = sqrt(gamma_prev) beta / (1 - gamma_t)` and
    `ct = sqrt(1 - beta) (1 - gamma_prev) / (1 - gamma_t)`, which equals Eq. 12 when `x0_hat` is
    not clipped, plus `sqrt(tau) sigma z`.

    Args:
        x_t: Current sample `(B, 1, H, W)`.
        x0_hat: Estimate of `x_0` (clipped or not) `(B, 1, H, W)`.
        gamma_t: `gamma` at the current step.
        gamma_prev: `gamma` at the next (smaller) step; 1 for the last step to `x_0`.
        noise: Standard normal noise (already masked) or `None` for no noise (the last step).
        tau: Temperature `tau_d` of the step noise, `z ~ N(0, tau I)`.
        variance: `"small"`: `sigma^2 = (1 - gamma_prev) / (1 - gamma_t) beta` (the paper);
            `"large"`: `sigma^2 = beta` (improved-diffusion's fixed-large, the authors' code).

    Returns:
        `x_prev` `(B, 1, H, W)`.
    """
    beta = 1.0 - gamma_t / gamma_prev
    c0 = gamma_prev**0.5 * beta / (1.0 - gamma_t)
    ct = (1.0 - beta) ** 0.5 * (1.0 - gamma_prev) / (1.0 - gamma_t)
    out = c0 * x0_hat + ct * x_t
    if noise is not None:
        if variance == "small":
            var = (1.0 - gamma_prev) / (1.0 - gamma_t) * beta
        elif variance == "large":
            var = beta
        else:
            raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")
        out = out + (tau * var) ** 0.5 * noise  # Eq. 12: + sigma_t z_t, z_t ~ N(0, tau_d I)
    return out


def track(steps: Iterable[_T], total: int, progress: bool | Progress, desc: str) -> Iterator[_T]:
    """Iterate over sampler steps, reporting progress if asked.

    Args:
        steps: The steps.
        total: Their number.
        progress: `False` for silence, `True` for a transient rich progress bar on stderr, or a
            callback `progress(done, total)` called after each step.
        desc: Label of the progress bar.

    Yields:
        The steps, unchanged.
    """
    if progress is False or progress is None:
        yield from steps
        return
    if progress is True:
        from rich.progress import Progress as RichProgress

        with RichProgress(transient=True) as bar:
            task = bar.add_task(desc, total=total)
            for item in steps:
                yield item
                bar.advance(task)
        return
    for i, item in enumerate(steps, start=1):
        yield item
        progress(i, total)
