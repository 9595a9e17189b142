"""mrsisr: super-resolution of MR spectroscopic imaging with deep generative models.

`mrsisr.load(NAME, size="small")` returns a ready pipeline with the zoo's trained weights
([`mrsisr.zoo.load`][mrsisr.zoo.load]); everything else lives in the submodules.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    # `import mrsisr` stays light (no torch) until a pipeline is asked for.
    if name == "load":
        from mrsisr.zoo import load

        return load
    raise AttributeError(f"module 'mrsisr' has no attribute {name!r}")
