"""Layered Gaussian assets: one splat set per layer, each a complete object of its own, composed
into one scene (GALA-style score distillation for any objects the prior knows)."""
