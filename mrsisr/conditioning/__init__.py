"""Built-in conditioning; each module registers its entries on import."""

from mrsisr.conditioning import (
    adagn,  # noqa: F401
    cin,  # noqa: F401
    filter_scaling,  # noqa: F401
)
