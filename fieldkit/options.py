"""Command-line options generated from config dataclasses, each field's docstring as its help."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import sys
import typing

from fieldkit.errors import FieldkitError


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


def _option_type(hint):
    """The type an option parses to: a field declared `int | None` parses as int."""
    choices = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return choices[0] if choices else hint


def add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    docs, hints = _field_docs(cls), typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            # a switch: argparse would read the string "False" as true
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=field.default,
                                help=docs.get(field.name, ""))
            continue
        shown = "" if field.default is None else f" (default: {field.default})"  # None: the help says what
        parser.add_argument(flag, dest=field.name, type=_option_type(hints[field.name]), default=field.default,
                            help=docs.get(field.name, "") + shown)


def dataclass_from_args(cls, args: argparse.Namespace):
    return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls) if hasattr(args, field.name)})


def config_argv(config) -> list[str]:
    """The options that give `config` back through `dataclass_from_args` (None: left to the default)."""
    argv = []
    for field in dataclasses.fields(config):
        value, flag = getattr(config, field.name), "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def check_numbers(config, positive: tuple[str, ...] = ()) -> None:
    """Every number of a config is finite and not negative, and those named in `positive` are above
    zero; else one error line naming the option."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        flag = "--" + field.name.replace("_", "-")
        if not math.isfinite(value) or value < 0 or (value == 0 and field.name in positive):
            bound = "above 0" if field.name in positive else "0 or more"
            raise FieldkitError(f"{flag} must be a finite number {bound}, got {value}")


def parse_setting(name: str, text, current):
    """`--set NAME=TEXT` as a value of `current`'s type: a finite number, a yes/no switch or text."""
    kind = type(current)
    if not isinstance(text, str):
        return text
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise FieldkitError(f"--set {name}={text}: expected true or false")
        return text.lower() in ("true", "1", "yes")
    try:
        value = kind(text)
    except ValueError:
        raise FieldkitError(f"--set {name}={text}: expected {'a whole number' if kind is int else 'a ' + kind.__name__}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldkitError(f"--set {name}={text}: expected a finite number")
    return value


def number(kind: type, minimum: float = 0, above: bool = False):
    """An argparse type: a finite `kind` of at least `minimum` (or above it)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got '{text}'") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {minimum}, got {text}")
        return value

    return parse


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes as one line (`fieldkit VERB: error: ...`) and exit status 2; `--help` shows usage."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)
