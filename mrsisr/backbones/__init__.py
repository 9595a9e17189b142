"""Built-in backbones; each module registers its entries on import."""

from mrsisr.backbones import (
    critic,  # noqa: F401
    discriminators,  # noqa: F401
    flownet,  # noqa: F401
    munet,  # noqa: F401
    unet,  # noqa: F401
)
