"""`mrsisr study solver`: FTDDM truncated at 100, 50 and 20 with DPM-Solver++ steps (Table 4)."""

from __future__ import annotations

import sys
from functools import partial

from mrsisr.eval.figures import line_plot
from mrsisr.eval.studies.base import StudyConfig, StudyResult, check_weights, run_variants
from mrsisr.eval.studies.truncation import t_trunc_pipeline, t_trunc_weights_path
from mrsisr.registries import STUDIES

T_TRUNCS = (100, 50, 20)
"""The paper's truncation steps in Table 4."""

SOLVER_STEPS = (50, 20, 10)
"""DPM-Solver++ step counts of Table 4; each runs where it is below T_trunc."""


@STUDIES.register(
    "solver",
    description="FTDDM truncated at 100/50/20, its chain or DPM-Solver++ at 50/20/10 (Table 4)",
)
def solver_study(cfg: StudyConfig) -> StudyResult:
    """FTDDM's ancestral chain against DPM-Solver++ from the same flow start (Table 4).

    Every valid pair of the paper's table: T_trunc = 100 with its 100-step chain or
    DPM-Solver++ at 50, 20, 10 steps; T_trunc = 50 with its chain or 20, 10 steps; T_trunc = 20
    with its chain or 10 steps. The T_trunc = 50 and 20 rows need FTDDM's flows for those steps
    ([`t_trunc_pipeline`][mrsisr.eval.studies.truncation.t_trunc_pipeline]); without them the
    study scores the T_trunc = 100 rows and says which flows are missing. Wilcoxon p-values are
    against FTDDM with its 100-step chain (the first row).

    Args:
        cfg: Study settings.

    Returns:
        The result (columns `t_trunc`, `sampler`, `steps`); figure: SSIM and PSNR against NFE,
        one line per T_trunc.
    """
    check_weights(cfg, ["ftddm"])
    variants = []
    for t_trunc in T_TRUNCS:
        chain = t_trunc_pipeline(cfg, "ftddm", t_trunc)
        if chain is None:
            if cfg.progress:
                print(
                    f"note: no FTDDM flow for T_trunc = {t_trunc} "
                    f"({t_trunc_weights_path('ftddm', t_trunc, cfg.size)}); its rows are left out",
                    file=sys.stderr,
                )
            continue
        prefix = "ftddm" if t_trunc == 100 else f"ftddm-t{t_trunc}"
        info = {"t_trunc": t_trunc, "sampler": "ancestral", "steps": t_trunc}
        variants.append(({"variant": f"{prefix}-ancestral-{t_trunc}", **info}, chain))
        for k in (k for k in SOLVER_STEPS if k < t_trunc):
            solver = {"sampler": {"type": "dpm_solver_pp", "steps": k}}
            info = {"t_trunc": t_trunc, "sampler": "dpm_solver_pp", "steps": k}
            variants.append(
                (
                    {"variant": f"{prefix}-dpm_solver_pp-{k}", **info},
                    t_trunc_pipeline(cfg, "ftddm", t_trunc, solver),
                )
            )
    plot = partial(line_plot, x="nfe", ys=["ssim", "psnr"], group="t_trunc", xlabel="NFE")
    return run_variants(cfg, "solver", variants, plot)
