"""`mrsisr study ablation`: flow only, diffusion only, both (Table 2); FTDDM without one
ingredient: the mask or the MRIs (from the UNet and the flow, or from the flow only) or the guide
loss (Table 3)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mrsisr.errors import CheckpointError
from mrsisr.eval.figures import bar_plot
from mrsisr.eval.studies.base import (
    StudyConfig,
    StudyResult,
    run_variants,
    study_pipeline,
)
from mrsisr.registries import STUDIES

__all__ = [
    "ABLATIONS",
    "Ablation",
    "ablation_pipeline",
    "ablation_study",
    "ablation_weights_path",
    "flat_keys",
]


@dataclass(frozen=True)
class Ablation:
    """One variant of the ablation study (the paper's Tables 2 and 3).

    Attributes:
        recipe: Zoo recipe it is built from.
        overrides: Recipe overrides that make the variant.
        tables: The paper's tables it belongs to.
        mask: The flow is conditioned on the quality mask (`None`: there is no flow).
        mri: The flow is conditioned on T1 and FLAIR (`None`: there is no flow).
        guide: The flow was trained with the guide loss (`None`: there is no flow).
        t_trunc: Truncation step (0: the flow alone; 1000: the diffusion model alone).
        own_weights: The variant needs its own trained weights (else it is a shipped recipe).
        own_parts: The parts its own weights hold; `None`: every part but the denoiser (a flow
            paired with the recipe's shipped UNet).
        unet_mask: The UNet reads the quality mask (`None`: no UNet runs, the flow alone).
        unet_mri: The UNet reads T1 and FLAIR (`None`: no UNet runs).
        flow_from: With shipped weights, the flow comes from this variant's file (the `_flow`
            twin, whose flow was trained the same way) and only the UNet from the variant's own;
            weights given with `--weights` supply every part of `own_parts` themselves.
    """

    recipe: str
    overrides: Mapping[str, Any]
    tables: tuple[int, ...]
    mask: bool | None = True
    mri: bool | None = True
    guide: bool | None = True
    t_trunc: int = 100
    own_weights: bool = True
    own_parts: tuple[str, ...] | None = None
    unet_mask: bool | None = True
    unet_mri: bool | None = True
    flow_from: str | None = None


NO_MASK_FLOW = {"mask_channel": False, "flow": {"cond_channels": 3}}
NO_MRI_FLOW = {"mri": False, "flow": {"cond_channels": 2}}

ABLATIONS: dict[str, Ablation] = {
    "ftddm": Ablation("ftddm", {}, (2, 3), own_weights=False),
    "flow_only": Ablation(
        "ftddm", {"pipeline": {"t_start": 0}}, (2,), t_trunc=0, unet_mask=None, unet_mri=None
    ),
    "diffusion_only": Ablation(
        "ddpm",
        {"denoiser": {"use_scale": True}},
        (2,),
        mask=None,
        mri=None,
        guide=None,
        t_trunc=1000,
        own_parts=("denoiser",),
    ),
    "no_mask": Ablation(
        "ftddm",
        {"initializer": NO_MASK_FLOW, "denoiser": {"use_mask": False}},
        (3,),
        mask=False,
        unet_mask=False,
        own_parts=("denoiser", "flow"),
        flow_from="no_mask_flow",
    ),
    "no_mri": Ablation(
        "ftddm",
        {"initializer": NO_MRI_FLOW, "denoiser": {"use_mri": False}},
        (3,),
        mri=False,
        unet_mri=False,
        own_parts=("denoiser", "flow"),
        flow_from="no_mri_flow",
    ),
    "no_mask_flow": Ablation("ftddm", {"initializer": NO_MASK_FLOW}, (3,), mask=False),
    "no_mri_flow": Ablation("ftddm", {"initializer": NO_MRI_FLOW}, (3,), mri=False),
    "no_guide": Ablation("ftddm", {"initializer": {"guide_weight": 0.0}}, (3,), guide=False),
}
"""The ablation variants by name. `ftddm` is the shipped FTDDM. `diffusion_only` is Table 2's
"diffusion only" row: FTDDM's UNet, with the s-embedding, trained on the whole chain (T = 1000) and
run from Gaussian noise like DDPM (the `ddpm` recipe with `denoiser.use_scale = true`), with its
own UNet weights. `no_mask` and `no_mri` are Table 3 as the paper has it: neither the UNet nor the
flow sees the mask (the MRIs), with their own UNet and the flow of their `_flow` twin.
`no_mask_flow`, `no_mri_flow` and `no_guide` pair FTDDM's shipped truncated UNet with a flow
trained like FTDDM's (same steps, batch, seed) but without one ingredient: what that ingredient
brings to the flow's start."""


def ablation_weights_path(variant: str, size: str) -> Path:
    """Where the shipped weights of an ablation variant live.

    Args:
        variant: A name from [`ABLATIONS`][mrsisr.eval.studies.ablation.ABLATIONS] with its own
            weights.
        size: Size variant.

    Returns:
        `zoo/weights/ablation/<recipe>-<variant>-<size>.safetensors`, holding the variant's own
        parts only (its flow; its UNet for `diffusion_only`; its UNet and a flow for
        `no_mask` / `no_mri`, whose shipped flow is taken from the `_flow` twin's file instead).
    """
    from mrsisr.weights import weights_dir

    recipe = ABLATIONS[variant].recipe
    return weights_dir() / "ablation" / f"{recipe}-{variant}-{size}.safetensors"


def ablation_pipeline(cfg: StudyConfig, name: str) -> Any:
    """Build a variant: FTDDM's (or the given) denoiser plus the variant's own parts.

    Args:
        cfg: Study settings.
        name: A name from [`ABLATIONS`][mrsisr.eval.studies.ablation.ABLATIONS].

    Returns:
        The variant's pipeline, in eval mode on `cfg.device`.
    """
    from mrsisr.recipes import load_recipe
    from mrsisr.weights import (
        check_trained_t_start,
        initializer_parts,
        load_pipeline_weights,
        weights_path,
    )

    ab = ABLATIONS[name]
    if not ab.own_weights:
        if name in cfg.weights:
            return study_pipeline(replace(cfg, weights={ab.recipe: cfg.weights[name]}), ab.recipe)
        return study_pipeline(cfg, ab.recipe)
    recipe = load_recipe(ab.recipe, size=cfg.size, overrides=ab.overrides)
    pipe = recipe.build()
    own = cfg.weights.get(name) or ablation_weights_path(name, cfg.size)
    if cfg.untrained and name not in cfg.weights and not Path(own).is_file():
        return pipe.to(cfg.device).eval()
    parts = list(ab.own_parts or initializer_parts(pipe))
    if int(pipe.t_start) > 0 and "denoiser" not in parts:
        denoiser = cfg.weights.get(ab.recipe) or weights_path(ab.recipe, cfg.size)
        if Path(denoiser).exists() or not cfg.untrained:  # untrained: random, for tests
            load_pipeline_weights(pipe, denoiser, parts=["denoiser"])
    check_trained_t_start(recipe, Path(own))
    _check_variant_card(name, Path(own))
    load_pipeline_weights(pipe, own, parts=parts)
    if ab.flow_from and name not in cfg.weights:  # shipped: the twin's flow, trained like FTDDM's
        twin = ablation_weights_path(ab.flow_from, cfg.size)
        if twin.is_file() or not cfg.untrained:
            check_trained_t_start(recipe, twin)
            _check_variant_card(ab.flow_from, twin)
            load_pipeline_weights(pipe, twin, parts=initializer_parts(pipe))
    return pipe.to(cfg.device).eval()


def flat_keys(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: `{"a": {"b": 1}}` -> `{"a.b": 1}`.

    Args:
        table: Nested mapping.
        prefix: Prefix of every key.

    Returns:
        Dotted key → leaf value.
    """
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_variant_card(name: str, source: Path) -> None:
    """Refuse weights whose card says they were trained without the variant's overrides."""
    from mrsisr.weights import card_of

    card = card_of(source)
    if card is None or "resolved_recipe" not in card:
        return
    trained = flat_keys(card["resolved_recipe"])
    for key, value in flat_keys(ABLATIONS[name].overrides).items():
        if key in trained and trained[key] != value:
            toml = str(value).lower() if isinstance(value, bool) else value
            raise CheckpointError(
                f"{source}: trained with {key} = {trained[key]!r}, but the '{name}' variant needs "
                f"{value!r}; pass a run trained with --set {key}={toml}"
            )


def _check_ablation_weights(cfg: StudyConfig, names: Sequence[str]) -> list[str]:
    """The variants to run: those whose weights are available (a note names the others).

    Raises:
        CheckpointError: If a recipe's own weights (FTDDM's, which every flow variant pairs
            with) are missing.
    """
    from mrsisr.weights import weights_path

    if cfg.untrained:
        return list(names)
    missing, skipped = [], []
    for name in names:
        ab = ABLATIONS[name]
        if name in cfg.weights:
            continue
        pairs_with_recipe = not ab.own_weights or ab.own_parts is None
        has_recipe = ab.recipe in cfg.weights or weights_path(ab.recipe, cfg.size).is_file()
        if pairs_with_recipe and not has_recipe:
            missing.append(f"{name} ({ab.recipe} weights)")
        elif ab.own_weights and not all(
            ablation_weights_path(v, cfg.size).is_file() for v in (name, ab.flow_from) if v
        ):
            skipped.append(name)
    if missing:
        raise CheckpointError(
            f"the ablation study needs '{cfg.size}' weights for {', '.join(missing)}; train a "
            "variant with `mrsisr train RECIPE --set ...` (see docs/bench.md) and pass "
            "--weights VARIANT=RUN"
        )
    for name in skipped:
        print(
            f"note: no '{cfg.size}' weights for the ablation variant '{name}' "
            f"({ablation_weights_path(name, cfg.size).name}); its row is left out "
            f"(train it as docs/bench.md says and pass --weights {name}=RUN)",
            file=sys.stderr,
        )
    return [n for n in names if n not in skipped]


@STUDIES.register(
    "ablation",
    description="flow only / diffusion only / both (Table 2); no mask, MRIs, guide loss (Table 3)",
)
def ablation_study(cfg: StudyConfig) -> StudyResult:
    """The ablations of the paper's Tables 2 and 3, scored on the same maps.

    Table 2 pits the flow alone (`t_start = 0`: the flow models `x_0`, 1 NFE) and the diffusion
    model alone (FTDDM's scale-conditioned UNet trained on T = 1000, run like DDPM) against
    FTDDM. Table 3 removes one ingredient: the quality mask or the MRIs from both the UNet and
    the flow (`no_mask`, `no_mri`, as the paper), the same from the flow alone with FTDDM's UNet
    (`no_mask_flow`, `no_mri_flow`: what the ingredient brings to the flow's start), or the
    guide loss (`no_guide`). Wilcoxon p-values are against FTDDM (the first row). A variant
    whose weights are not available is left out with a note.

    Weights: `ftddm` uses the shipped `ftddm` weights; each other variant its own from
    `zoo/weights/ablation/` or `--weights VARIANT=RUN` (a run of `mrsisr train RECIPE --set ...`
    with that variant's overrides, see [`ABLATIONS`][mrsisr.eval.studies.ablation.ABLATIONS]).

    Args:
        cfg: Study settings.

    Returns:
        The result (columns `tables`, `mask`, `mri` (the flow's condition), `unet_mask`,
        `unet_mri`, `guide`, `t_trunc`); figure: SSIM and PSNR of each variant per scale.
    """
    names = [n for n in ABLATIONS if not (cfg.skip_slow and ABLATIONS[n].t_trunc >= 1000)]
    names = _check_ablation_weights(cfg, names)
    variants = []
    for name in names:
        ab = ABLATIONS[name]
        info = {
            "variant": name,
            "tables": ",".join(map(str, ab.tables)),
            "mask": ab.mask,
            "mri": ab.mri,
            "unet_mask": ab.unet_mask,
            "unet_mri": ab.unet_mri,
            "guide": ab.guide,
            "t_trunc": ab.t_trunc,
        }
        variants.append((info, ablation_pipeline(cfg, name)))
    return run_variants(cfg, "ablation", variants, bar_plot)
