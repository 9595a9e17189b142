"""Built-in conditioning; each module registers its entries on import."""
from mrsisr.conditioning import filter_scaling  # noqa: F401
from mrsisr.conditioning import cin  # noqa: F401
from mrsisr.conditioning import adagn  # noqa: F401
