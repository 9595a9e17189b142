"""`mrsisr study scale`: FTDDM told other upscaling factors than the actual one (Fig. 6)."""

from __future__ import annotations

from mrsisr.eval.figures import scale_plot
from mrsisr.eval.studies.base import (
    ConditionedScale,
    StudyConfig,
    StudyResult,
    check_weights,
    run_variants,
    study_pipeline,
)
from mrsisr.registries import STUDIES


@STUDIES.register(
    "scale", description="FTDDM conditioned on other upscaling factors than the actual one (Fig. 6)"
)
def scale_study(cfg: StudyConfig) -> StudyResult:
    """Actual against conditioned upscaling factor (Fig. 6): best where they agree?

    FTDDM's networks are told `s` in {2, 2.67, 4, 5.33, 8} (matrices 32, 24, 16, 12, 8) while
    the input's actual factor is each of `cfg.scales`.

    Args:
        cfg: Study settings.

    Returns:
        The result (column `conditioned_scale`); figure: SSIM and PSNR against the conditioned
        factor, one panel per actual factor.
    """
    check_weights(cfg, ["ftddm"])
    base = study_pipeline(cfg, "ftddm")
    variants = []
    for matrix in (32, 24, 16, 12, 8):
        s = 64 / matrix
        variants.append(
            (
                {"variant": f"ftddm-s{s:.2f}", "conditioned_scale": round(s, 4)},
                ConditionedScale(base, s),
            )
        )
    result = run_variants(cfg, "scale", variants, scale_plot)
    for r in result.rows:
        told = r["conditioned_scale"]
        r["matches_actual"] = None if told is None else abs(told - r["scale"]) < 1e-6
    return result
