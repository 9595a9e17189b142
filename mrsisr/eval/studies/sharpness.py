"""`mrsisr study sharpness`: FTDDM's τd sweep, fidelity against perceptual distance (Fig. 7)."""

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
    "sharpness",
    description="FTDDM's tau_d sweep: fidelity (PSNR, SSIM) vs sharpness (LPIPS) (Fig. 7)",
)
def sharpness_study(cfg: StudyConfig) -> StudyResult:
    """The τd sweep of Fig. 7: fidelity (PSNR, SSIM) against perceptual distance (LPIPS).

    Args:
        cfg: Study settings.

    Returns:
        The result (columns `tau_d`, LPIPS AlexNet and VGG); figure: PSNR, SSIM and LPIPS
        against τd.
    """
    check_weights(cfg, ["ftddm"])
    variants = [
        (
            {"variant": f"ftddm-tau_d{t:g}", "method": "ftddm", "tau_d": t},
            study_pipeline(cfg, "ftddm", {"sampler": {"tau_d": t}}),
        )
        for t in (0.0, 0.3, 0.6, 0.9, 1.0)
    ]
    ys = ["psnr", "ssim", "lpips_alex", "lpips_vgg"]
    plot = partial(line_plot, x="tau_d", ys=ys, group="method", xlabel="τd")
    return run_variants(cfg, "sharpness", variants, plot, lpips=("alex", "vgg"))
