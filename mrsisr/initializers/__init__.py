"""Built-in initializers; each module registers its entries on import."""

from mrsisr.initializers import (
    flow,  # noqa: F401
    gan,  # noqa: F401
    gaussian,  # noqa: F401
)
