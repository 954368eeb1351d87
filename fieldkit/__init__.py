"""fieldkit: a 3D and neural-field distillation engine."""
from fieldkit.errors import FieldkitError

__version__ = "0.1.0"


def load(path):
    """Loads a fieldkit asset (safetensors) or a splat file (.ply, .splat) into an object with `render(cameras)`."""
    from fieldkit.io import load as load_asset

    return load_asset(path)


__all__ = ["FieldkitError", "load", "__version__"]
