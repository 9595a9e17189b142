"""Built-in conditioning; each module registers its entries on import."""
from mrsisr.conditioning import filter_scaling  # noqa: F401
