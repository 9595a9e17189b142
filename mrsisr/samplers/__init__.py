"""Built-in samplers; each module registers its entries on import."""
from mrsisr.samplers import ancestral  # noqa: F401
from mrsisr.samplers import dpm_solver_pp  # noqa: F401
from mrsisr.samplers import respace  # noqa: F401
