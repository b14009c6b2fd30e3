"""Config files: TOML on disk, `--set key=value` overrides, readable errors, renamed keys.

One `--set` grammar for every command line (`solace train`, `export`, `eval`, `data
synthesize`): the key may be dotted (`generate.dialogues=5` sets `[generate] dialogues`), and the
value is read as a TOML value (`42`, `0.5`, `true`, `"text"`, `'text'`, `[1, 2]`, `{a = 1}`);
anything that is not one is taken as the plain string (`--set name=my-run`).
"""

from __future__ import annotations

import copy
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(ValueError):
    """A config file or an override is unusable; the message names the file, key and fix."""


def parse_value(raw: str) -> Any:
    """A `--set` value: the TOML value it spells, else the plain (stripped) string."""
    raw = raw.strip()
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_override(item: str, error: type[Exception] = ConfigFileError) -> tuple[list[str], Any]:
    """One `--set key=value` as (key path, value); `error` is raised for a malformed item."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise error(f"--set expects key=value or section.key=value, got {item!r}")
    return key.split("."), parse_value(raw)


def apply_overrides(
    data: Mapping[str, Any], overrides: Iterable[str], error: type[Exception] = ConfigFileError
) -> dict[str, Any]:
    """A copy of `data` with every `--set` override applied (dotted keys reach into sections)."""
    result = copy.deepcopy(dict(data))
    for item in overrides:
        keys, value = parse_override(item, error)
        node = result
        for part in keys[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise error(f"--set {item!r}: {part} is not a section")
        node[keys[-1]] = value
    return result


def read_toml(path: str | Path, error: type[Exception] = ConfigFileError) -> dict[str, Any]:
    """The TOML file as a dict; `error` names the file when it is missing or not TOML."""
    path = Path(path)
    if not path.is_file():
        raise error(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid TOML: {exc}") from exc


def read_toml_extending(
    path: str | Path, error: type[Exception] = ConfigFileError, seen: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """`read_toml`, where `extends = "other.toml"` (relative to this file) is read first and this
    file's keys override it, so a row of a comparison states only what differs; `name` always
    comes from the file itself."""
    path = Path(path)
    if path.resolve() in seen:
        raise error(f"{path}: `extends` loops back to itself")
    data = read_toml(path, error)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise error(f"{path}: extends must be a file name, got {parent!r}")
    base = read_toml_extending(path.parent / parent, error, (*seen, path.resolve()))
    base.pop("name", None)  # a row is named after its own file
    return {**base, **data}


def validation_problems(exc: ValidationError) -> list[str]:
    """One line per problem, `key.path: what is wrong` ("unknown key" for a misspelt one)."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{loc}: {msg}")
    return problems


def validate_model(
    model: type[M], data: Mapping[str, Any], source: str, what: str, error: type[Exception]
) -> M:
    """`model.model_validate(data)`, every problem named by its key in one `error` message.

    Args:
        what: the kind of config, for the message ("training config").
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  {line}" for line in validation_problems(exc))
        raise error(f"{source}: invalid {what}:\n{problems}") from exc


def renamed_keys(data: Any, renames: Mapping[str, str], where: str) -> Any:
    """`data` with old key names replaced by new ones, warning once per old name used.

    For a pydantic `model_validator(mode="before")`: a renamed key keeps working for one release.
    Both the old and the new name set at once is an error (which one was meant is unclear).

    Args:
        where: the section's dotted name for messages ("memory", "generate"); "" for the top.
    """
    if not isinstance(data, Mapping) or not any(old in data for old in renames):
        return data
    result = dict(data)
    prefix = f"{where}." if where else ""
    for old, new in renames.items():
        if old not in result:
            continue
        if new in result:
            raise ValueError(
                f"{prefix}{old} is the old name of {prefix}{new}; set only {prefix}{new}"
            )
        warnings.warn(
            f"{prefix}{old} is now called {prefix}{new}; the old name works until the next release",
            FutureWarning,
            stacklevel=2,
        )
        result[new] = result.pop(old)
    return result
