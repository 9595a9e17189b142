"""`mrsisr study truncation`: quality against NFE for the fast samplers (the paper's Fig. 5).

The paper truncates TDPM and FTDDM at T_trunc = 100, 50 and 20: each truncation has its own
initializer (GAN or flow) trained to draw `x_{T_trunc}`, and the truncated UNet runs its full chain
from there. The UNet trained on t ≤ 100 covers every smaller window, so a truncation needs only
its own initializer: [`t_trunc_pipeline`][mrsisr.eval.studies.truncation.t_trunc_pipeline] pairs
the recipe's UNet with one from `zoo/weights/truncation/` (or `--weights ftddm-t50=RUN`).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch

from mrsisr.errors import CheckpointError, MrsisrError
from mrsisr.eval.figures import line_plot
from mrsisr.eval.studies.base import (
    StudyConfig,
    StudyResult,
    check_weights,
    run_variants,
    study_overrides,
    study_pipeline,
)
from mrsisr.registries import STUDIES

__all__ = ["t_trunc_pipeline", "t_trunc_weights_path", "truncation_study"]


def t_trunc_weights_path(recipe: str, t_trunc: int, size: str) -> Path:
    """Where the shipped initializer of a recipe truncated at `t_trunc` lives.

    Args:
        recipe: `ftddm` or `tdpm`.
        t_trunc: The truncation step the initializer draws.
        size: Size variant.

    Returns:
        `zoo/weights/truncation/<recipe>-t<t_trunc>-<size>.safetensors` (initializer only).

    Examples:
        >>> t_trunc_weights_path("ftddm", 50, "small").name
        'ftddm-t50-small.safetensors'
    """
    from mrsisr.weights import weights_dir

    return weights_dir() / "truncation" / f"{recipe}-t{int(t_trunc)}-{size}.safetensors"


def t_trunc_pipeline(
    cfg: StudyConfig, recipe: str, t_trunc: int, overrides: dict[str, Any] | None = None
) -> Any | None:
    """A truncated recipe at another truncation step, with an initializer trained for it.

    At the recipe's own `t_start` this is its shipped pipeline. Below it, the recipe's UNet
    (trained on `t ≤ t_start`, so it covers `t ≤ t_trunc`) is paired with the initializer given as
    `cfg.weights["<recipe>-t<t_trunc>"]` or shipped at
    [`t_trunc_weights_path`][mrsisr.eval.studies.truncation.t_trunc_weights_path]; the sampler
    runs from `t_trunc` (its full ancestral chain unless `overrides` say otherwise). A prior
    temperature calibrated for the initializer (`tau_f` in its card, written by
    `benchmarks/calibrate_tau.py --record`) replaces the recipe's, unless `overrides` set one.

    Args:
        cfg: Study settings.
        recipe: A truncated recipe (`ftddm`, `tdpm`).
        t_trunc: The truncation step, at most the recipe's own.
        overrides: Further recipe overrides that keep the networks' shapes (e.g. the sampler).

    Returns:
        The pipeline in eval mode on `cfg.device`; `None` when no initializer for `t_trunc` is
        available (random weights instead when `cfg.untrained`).

    Raises:
        MrsisrError: If `t_trunc` is above the recipe's own truncation step.
        CheckpointError: If the initializer was trained for another step, or a given one does
            not exist.
    """
    from mrsisr.eval.studies.ablation import flat_keys
    from mrsisr.recipes import load_recipe
    from mrsisr.weights import (
        card_of,
        check_trained_t_start,
        initializer_parts,
        load_pipeline_weights,
        weights_path,
    )

    native = _native_t_start(cfg, recipe)
    if int(t_trunc) == native:
        return study_pipeline(cfg, recipe, overrides)
    if not 0 < int(t_trunc) < native:
        raise MrsisrError(
            f"`t_trunc` {t_trunc}: {recipe}'s UNet is trained on t <= {native}; use 1-{native}"
        )
    key = f"{recipe}-t{int(t_trunc)}"
    source = Path(cfg.weights.get(key) or t_trunc_weights_path(recipe, t_trunc, cfg.size))
    if key in cfg.weights and not source.exists():
        raise CheckpointError(f"--weights {key}={source}: no such file or run folder")
    card = card_of(source) if source.exists() else None
    calibrated = {} if card is None or "tau_f" not in card else {"initializer.tau_f": card["tau_f"]}
    flat = {
        "pipeline.t_start": int(t_trunc),
        **calibrated,
        **flat_keys(study_overrides(cfg, overrides)),
    }
    built = load_recipe(recipe, size=cfg.size, overrides=flat)
    if not source.exists():
        if not cfg.untrained:
            return None
        with torch.random.fork_rng(devices=[]):  # random weights, the same in every run
            torch.manual_seed(cfg.seed)
            return built.build().to(cfg.device).eval()
    check_trained_t_start(built, source)
    pipe = built.build()
    load_pipeline_weights(
        pipe, cfg.weights.get(recipe) or weights_path(recipe, cfg.size), ["denoiser"]
    )
    load_pipeline_weights(pipe, source, initializer_parts(pipe))
    return pipe.to(cfg.device).eval()


def _native_t_start(cfg: StudyConfig, recipe: str) -> int:
    from mrsisr.recipes import load_recipe

    return int(load_recipe(recipe, size=cfg.size).tables["pipeline"]["t_start"])


@STUDIES.register(
    "truncation",
    description="quality vs NFE: respace, DPM-Solver++, TDPM, FTDDM at 100/50/20 steps, "
    "DDPM-1000 as reference (Fig. 5)",
)
def truncation_study(cfg: StudyConfig) -> StudyResult:
    """Quality against sampling steps for the four fast samplers of Fig. 5.

    `respace` and `dpm_solver_pp` run the DDPM weights from T = 1000 with K steps (`respace` at
    the recipes' τd = 0.9, as in Table 1 and Sec. 3.3.7). TDPM and FTDDM at K steps are the
    models truncated at T_trunc = K, as in the paper: the full chain from an initializer trained
    to draw `x_K` ([`t_trunc_pipeline`][mrsisr.eval.studies.truncation.t_trunc_pipeline]), NFE
    K + 1. Where no such initializer is shipped or given, the row is the T_trunc = 100 model with
    its chain respaced to K steps instead, labelled `<recipe>-respaced-K`, and a note says so.
    DDPM with its full 1000-step chain is the reference line (`ddpm-1000`, on `cfg.slow_limit`
    maps per scale; left out with `cfg.skip_slow`).

    Args:
        cfg: Study settings (`cfg.steps` are the K values).

    Returns:
        The result (column `t_trunc`); figure: SSIM and PSNR against NFE, one line per method.
    """
    from mrsisr.zoo import sampling_overrides

    check_weights(cfg, ["ddpm", "tdpm", "ftddm"])
    variants = []
    for k in (int(k) for k in cfg.steps):
        variants += [
            (
                {"variant": f"respace-{k}", "method": "respace", "steps": k, "t_trunc": 1000},
                study_pipeline(cfg, "ddpm", {"sampler": {"type": "respace", "steps": k}}),
            ),
            (
                {
                    "variant": f"dpm_solver_pp-{k}",
                    "method": "dpm_solver_pp",
                    "steps": k,
                    "t_trunc": 1000,
                },
                study_pipeline(cfg, "ddpm", {"sampler": {"type": "dpm_solver_pp", "steps": k}}),
            ),
        ]
        for recipe in ("tdpm", "ftddm"):
            native = _native_t_start(cfg, recipe)
            pipe = t_trunc_pipeline(cfg, recipe, k) if k <= native else None
            if pipe is not None:
                info = {"variant": f"{recipe}-{k}", "method": recipe, "steps": k, "t_trunc": k}
            else:
                if k < native and cfg.progress:
                    print(
                        f"note: no {recipe} initializer for T_trunc = {k} "
                        f"({t_trunc_weights_path(recipe, k, cfg.size)}); the row "
                        f"{recipe}-respaced-{k} respaces the T_trunc = {native} chain instead",
                        file=sys.stderr,
                    )
                info = {
                    "variant": f"{recipe}-respaced-{k}",
                    "method": f"{recipe}-respaced",
                    "steps": k,
                    "t_trunc": native,
                }
                pipe = study_pipeline(cfg, recipe, sampling_overrides(recipe, cfg.size, steps=k))
            variants.append((info, pipe))
    if not cfg.skip_slow:
        reference = {"variant": "ddpm-1000", "method": "ddpm", "steps": 1000, "t_trunc": 1000}
        variants.append((reference, study_pipeline(cfg, "ddpm")))
    return run_variants(
        cfg,
        "truncation",
        variants,
        partial(
            line_plot,
            x="nfe",
            ys=["ssim", "psnr"],
            group="method",
            xlabel="NFE",
            reference="ddpm",
        ),
    )
