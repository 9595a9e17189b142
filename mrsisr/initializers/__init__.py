"""Built-in initializers; each module registers its entries on import."""
from mrsisr.initializers import flow  # noqa: F401
from mrsisr.initializers import gan  # noqa: F401
from mrsisr.initializers import gaussian  # noqa: F401
