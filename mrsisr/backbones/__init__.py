"""Built-in backbones; each module registers its entries on import."""
from mrsisr.backbones import flownet  # noqa: F401
from mrsisr.backbones import munet  # noqa: F401
from mrsisr.backbones import unet  # noqa: F401
from mrsisr.backbones import critic  # noqa: F401
from mrsisr.backbones import discriminators  # noqa: F401
