"""Built-in samplers; each module registers its entries on import."""

from mrsisr.samplers import (
    ancestral,  # noqa: F401
    diffusers_adapter,  # noqa: F401
    dpm_solver_pp,  # noqa: F401
    respace,  # noqa: F401
)
