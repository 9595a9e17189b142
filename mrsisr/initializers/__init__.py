"""Built-in initializers; each module registers its entries on import."""
