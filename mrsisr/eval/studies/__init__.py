"""The paper's studies as reproducible tables and figures (`mrsisr study NAME`).

Each study is one small module here, registered in [`STUDIES`][mrsisr.registries.STUDIES] with a
decorator (third-party packages add theirs through the `mrsisr.studies` entry-point group). A study
builds labelled pipeline variants from zoo recipes and their weights, scores them on the same test
maps ([`run_variants`][mrsisr.eval.studies.base.run_variants]) and returns a
[`StudyResult`][mrsisr.eval.studies.base.StudyResult] whose rows extend the bench rows with the
variant's settings, plus a figure. The docs' Studies page walks through adding one.

| study | the paper's | variants |
|---|---|---|
| `truncation` | Fig. 5 | respace, DPM-Solver++ at 100, 50, 20 steps; TDPM, FTDDM truncated there; DDPM-1000 |
| `solver` | Table 4 | FTDDM truncated at 100, 50, 20: its ancestral chain or DPM-Solver++ at 50, 20, 10 steps |
| `scale` | Fig. 6 | FTDDM conditioned on upscaling factors other than the actual one |
| `sharpness` | Fig. 7 | FTDDM's τd from 0 to 1, with PSNR, SSIM and LPIPS (AlexNet, VGG) |
| `ablation` | Tables 2, 3 | flow only, diffusion only, both; no mask or MRIs (UNet + flow, or flow); no guide |
| `consistency` | — | every model with and without k-space data consistency |

Examples:
    >>> from mrsisr.registries import STUDIES
    >>> sorted(STUDIES.names())
    ['ablation', 'consistency', 'scale', 'sharpness', 'solver', 'truncation']
"""

from mrsisr.eval.studies import ablation, consistency, scale, sharpness, solver, truncation
from mrsisr.eval.studies.ablation import ABLATIONS, Ablation, ablation_weights_path
from mrsisr.eval.studies.base import (
    STUDY_MARKER,
    ConditionedScale,
    StudyConfig,
    StudyResult,
    check_weights,
    partial_path,
    per_map_scores,
    run_variants,
    study_cache,
    study_config,
    study_overrides,
    study_pipeline,
)

__all__ = [
    "ABLATIONS",
    "STUDY_MARKER",
    "Ablation",
    "ConditionedScale",
    "StudyConfig",
    "StudyResult",
    "ablation",
    "ablation_weights_path",
    "check_weights",
    "consistency",
    "partial_path",
    "per_map_scores",
    "run_variants",
    "scale",
    "sharpness",
    "solver",
    "study_cache",
    "study_config",
    "study_overrides",
    "study_pipeline",
    "truncation",
]
