"""fieldkit: a 3D and neural-field distillation engine."""
