"""Pipelines: how the parts of a recipe are wired into a super-resolution method.

Each pipeline registers itself in [`PIPELINES`][mrsisr.registries.PIPELINES] with a decorator
when this package is imported, and keeps the [`Pipeline`][mrsisr.types.Pipeline] contract:

- `diffusion`: [`DiffusionPipeline`][mrsisr.pipelines.diffusion.DiffusionPipeline] (DDPM,
  respaced DDPM, DPM-Solver++, TDPM, FTDDM and hybrids);
- `one_step`: [`OneStepPipeline`][mrsisr.pipelines.one_step.OneStepPipeline] (MUNet-FS-cWGAN);
- `flow_enhancer`: [`FlowEnhancerPipeline`][mrsisr.pipelines.flow_enhancer.FlowEnhancerPipeline].
"""

from mrsisr.pipelines.base import SuperResolveMixin, count_parameters, pipeline_parts
from mrsisr.pipelines.diffusion import DiffusionPipeline
from mrsisr.pipelines.flow_enhancer import FlowEnhancerPipeline
from mrsisr.pipelines.one_step import OneStepPipeline

__all__ = [
    "DiffusionPipeline",
    "FlowEnhancerPipeline",
    "OneStepPipeline",
    "SuperResolveMixin",
    "count_parameters",
    "pipeline_parts",
]
