"""`mrsisr study solver`: FTDDM's flow start with DPM-Solver++ at 50, 20, 10 steps (Table 4)."""

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
    "solver", description="FTDDM's flow start with DPM-Solver++ at 50/20/10 steps (Table 4)"
)
def solver_study(cfg: StudyConfig) -> StudyResult:
    """FTDDM with its ancestral chain against FTDDM's flow start + DPM-Solver++ (Table 4).

    Args:
        cfg: Study settings.

    Returns:
        The result; figure: SSIM and PSNR against solver steps.
    """
    check_weights(cfg, ["ftddm"])
    variants = [
        (
            {"variant": "ftddm-ancestral-100", "sampler": "ancestral", "steps": 100},
            study_pipeline(cfg, "ftddm"),
        ),
    ]
    for k in (50, 20, 10):
        variants.append(
            (
                {"variant": f"ftddm-dpm_solver_pp-{k}", "sampler": "dpm_solver_pp", "steps": k},
                study_pipeline(cfg, "ftddm", {"sampler": {"type": "dpm_solver_pp", "steps": k}}),
            )
        )
    plot = partial(
        line_plot, x="steps", ys=["ssim", "psnr"], group="sampler", xlabel="sampler steps"
    )
    return run_variants(cfg, "solver", variants, plot)
