"""mrsisr: super-resolution of MR spectroscopic imaging with deep generative models."""

__version__ = "0.1.0"
