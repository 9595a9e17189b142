"""Built-in backbones; each module registers its entries on import."""
