"""Built-in samplers; each module registers its entries on import."""
