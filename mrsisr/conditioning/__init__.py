"""Built-in conditioning; each module registers its entries on import."""
