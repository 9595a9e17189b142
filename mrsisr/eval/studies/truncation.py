"""`mrsisr study truncation`: quality against NFE for the fast samplers (the paper's Fig. 5)."""

from __future__ import annotations

from functools import partial

from mrsisr.eval.figures import line_plot
from mrsisr.eval.studies.base import (
    StudyConfig,
    StudyResult,
    check_weights,
    run_variants,
    study_pipeline,
)
from mrsisr.registries import STUDIES


@STUDIES.register(
    "truncation",
    description="quality vs NFE: respace, DPM-Solver++, TDPM, FTDDM at 100/50/20 steps (Fig. 5)",
)
def truncation_study(cfg: StudyConfig) -> StudyResult:
    """Quality against sampling steps for the four fast samplers of Fig. 5.

    `respace` and `dpm_solver_pp` run the DDPM weights from T = 1000 with K steps (`respace` at
    the recipes' τd = 0.9, as in Table 1 and Sec. 3.3.7); TDPM and FTDDM keep their truncated
    start and respace their 100-step chain to K steps (NFE K + 1).

    Args:
        cfg: Study settings (`cfg.steps` are the K values).

    Returns:
        The result; figure: SSIM and PSNR against NFE, one line per method.
    """
    from mrsisr.zoo import sampling_overrides

    check_weights(cfg, ["ddpm", "tdpm", "ftddm"])
    variants = []
    for k in cfg.steps:
        k = int(k)
        variants += [
            (
                {"variant": f"respace-{k}", "method": "respace", "steps": k},
                study_pipeline(cfg, "ddpm", {"sampler": {"type": "respace", "steps": k}}),
            ),
            (
                {"variant": f"dpm_solver_pp-{k}", "method": "dpm_solver_pp", "steps": k},
                study_pipeline(cfg, "ddpm", {"sampler": {"type": "dpm_solver_pp", "steps": k}}),
            ),
            (
                {"variant": f"tdpm-{k}", "method": "tdpm", "steps": k},
                study_pipeline(cfg, "tdpm", sampling_overrides("tdpm", cfg.size, steps=k)),
            ),
            (
                {"variant": f"ftddm-{k}", "method": "ftddm", "steps": k},
                study_pipeline(cfg, "ftddm", sampling_overrides("ftddm", cfg.size, steps=k)),
            ),
        ]
    return run_variants(
        cfg,
        "truncation",
        variants,
        partial(line_plot, x="nfe", ys=["ssim", "psnr"], group="method", xlabel="NFE"),
    )
