"""Command-line options generated from config dataclasses, each field's docstring as its help."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect


def _field_docs(cls) -> dict[str, str]:
    """Attribute docstrings (the string literal under each dataclass field)."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    docs, body = {}, tree.body[0].body
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = str(following.value.value)
    return docs


def add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    docs = _field_docs(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            # a switch: argparse would read the string "False" as true
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=field.default,
                                help=docs.get(field.name, ""))
            continue
        parser.add_argument(flag, dest=field.name, type=type(field.default), default=field.default,
                            help=f"{docs.get(field.name, '')} (default: {field.default})")


def dataclass_from_args(cls, args: argparse.Namespace):
    return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls) if hasattr(args, field.name)})
