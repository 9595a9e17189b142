"""The registries of mrsisr, one per role.

| registry | role | entry-point group |
|---|---|---|
| `INITIALIZERS` | produce the starting image at the truncation step (Gaussian, GAN, flow) | `mrsisr.initializers` |
| `BACKBONES` | networks: denoising UNet, MUNet, flows, discriminators | `mrsisr.backbones` |
| `SAMPLERS` | reverse-diffusion samplers (ancestral, respaced, DPM-Solver++) | `mrsisr.samplers` |
| `CONDITIONING` | how a network is conditioned on (t, s): CIN, AdaGN, filter scaling | `mrsisr.conditioning` |
| `SCHEDULES` | noise schedules (cosine) | `mrsisr.schedules` |
| `PIPELINES` | how parts are wired into a super-resolution method | `mrsisr.pipelines` |
| `RECIPES` | the declarative methods of the zoo (`zoo/*.toml`) | `mrsisr.recipes` |
| `STUDIES` | the paper's studies (`mrsisr study NAME`) | `mrsisr.studies` |

Built-ins register themselves when their package is imported; the registry imports the package
on its first lookup.
"""

from __future__ import annotations

from mrsisr.registry import Registry

INITIALIZERS: Registry = Registry("initializers", locations=["mrsisr.initializers"])
"""Initializers: what produces the image at the truncation step (gaussian, gan, flow)."""

BACKBONES: Registry = Registry("backbones", locations=["mrsisr.backbones"])
"""Networks: UNets, flows, MUNet, critics and discriminators."""

SAMPLERS: Registry = Registry("samplers", locations=["mrsisr.samplers"])
"""Reverse-diffusion samplers (ancestral, respace, dpm_solver_pp, diffusers)."""

CONDITIONING: Registry = Registry("conditioning", locations=["mrsisr.conditioning"])
"""How a network is conditioned on (t, s): cin, adagn (`kind = "norm"`), filter_scaling."""

SCHEDULES: Registry = Registry("schedules", locations=["mrsisr.schedules"])
"""Noise schedules (cosine)."""

CONSISTENCY: Registry = Registry("consistency", locations=["mrsisr.consistency"])
"""Data-consistency projections of x0 estimates (none, kspace)."""

PIPELINES: Registry = Registry("pipelines", locations=["mrsisr.pipelines"])
"""How parts are wired into a method (diffusion, one_step, flow_enhancer); see `mrsisr.pipelines`."""


def _check_recipe_target(target: object) -> str | None:
    import os
    from pathlib import Path

    if not isinstance(target, (str, os.PathLike)):
        return f"a recipe entry point must give a path to a TOML file, not {type(target).__name__}"
    if not Path(target).is_file():
        return f"recipe file {target} not found"
    return None


RECIPES: Registry = Registry(
    "recipes", populate="mrsisr.recipes:register_zoo", check=_check_recipe_target
)
"""The zoo's recipes (`zoo/*.toml`) by name; plugins add TOML files."""

STUDIES: Registry = Registry("studies", locations=["mrsisr.eval.studies"])
"""The paper's studies, one module each under `mrsisr/eval/studies/`."""


ROLES: dict[str, Registry] = {
    r.role: r
    for r in (
        INITIALIZERS,
        BACKBONES,
        SAMPLERS,
        CONDITIONING,
        SCHEDULES,
        CONSISTENCY,
        PIPELINES,
        RECIPES,
        STUDIES,
    )
}
"""All registries by role name, in the order `mrsisr list` shows them."""
