"""What a layer's prompt says: the object itself ("a blue sphere"), where it goes relative to the
layers below ("on top"), and the prompt of the whole composite ("a red cube with a blue sphere on
top"), which is what the prior is asked about the layers together."""
from __future__ import annotations

import re
from dataclasses import dataclass

from fieldkit.errors import FieldkitError
from fieldkit.generate.commands import prompt_directory

ON_TOP = "on top"
PLACEMENT_PATTERN = re.compile(r"\s+on\s+top(\s+of\s+it)?\s*[.!]?\s*$", re.IGNORECASE)
"""The placements a layer prompt may end with; without one, a layer shares the base's centre
(something around or over it)."""


@dataclass(frozen=True)
class LayerPrompt:
    text: str
    """the prompt as given, e.g. "a blue sphere on top\""""
    own: str
    """the object alone, e.g. "a blue sphere": what the layer rendered alone must look like"""
    placement: str | None
    """ON_TOP or None"""
    name: str
    """a file-system-safe name, e.g. "blue_sphere\""""


def parse_layer(text: str) -> LayerPrompt:
    match = PLACEMENT_PATTERN.search(text)
    own = text[:match.start()].strip() if match else text.strip()
    if not own:
        raise FieldkitError(f"the layer prompt {text!r} names no object; e.g. --layer \"a blue sphere on top\"")
    return LayerPrompt(text.strip(), own, ON_TOP if match else None, layer_name(own))


def layer_name(prompt: str) -> str:
    """A file-system-safe name without articles: "a blue sphere" -> "blue_sphere"."""
    return prompt_directory(re.sub(r"\b(a|an|the)\b", " ", prompt, flags=re.IGNORECASE))


def composite_prompt(base: str, layers: list[LayerPrompt]) -> str:
    """The prompt of the base with `layers` on it: "a red cube with a blue sphere on top"."""
    return f"{base} with {' and '.join(layer.text for layer in layers)}"

