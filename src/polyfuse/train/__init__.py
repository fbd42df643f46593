"""Training: the Lightning module, callbacks and the fit loop (the only package importing lightning)."""
