"""Defense hyperparameters: frozen dataclasses, overridable by `key=value` strings.

Each defense declares its hyperparameters as a dataclass whose defaults are the paper's.
Overrides arrive as text (the CLI's `--param eps=0.3`) and are converted by the field's
declared type, so a typo or a bad value fails before any training starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

P = TypeVar("P")


@dataclasses.dataclass(frozen=True)
class NoParams:
    """The reference defense has no hyperparameters."""


_CONVERTERS = {"float": float, "int": int, "bool": lambda text: _parse_bool(text), "str": str}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def _field_types(params_cls: type) -> dict[str, str]:
    # Annotations are strings under `from __future__ import annotations`.
    return {f.name: str(f.type).replace("typing.", "") for f in dataclasses.fields(params_cls)}


def _convert(params_cls: type, key: str, value: Any) -> Any:
    types = _field_types(params_cls)
    if key not in types:
        known = ", ".join(sorted(types)) or "none"
        raise ValueError(f"unknown parameter {key!r} for {params_cls.__qualname__}; known: {known}")
    if not isinstance(value, str):
        return value
    base = types[key].split("|")[0].strip()
    if value.strip().lower() == "none" and "None" in types[key]:
        return None
    try:
        return _CONVERTERS[base](value)
    except (KeyError, ValueError) as error:
        raise ValueError(f"parameter {key}={value!r}: expected {types[key]} ({error})") from error


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    """`["eps=0.3", "xi=1e-6"]` -> `{"eps": "0.3", "xi": "1e-6"}`; ValueError on bad syntax."""
    parsed: dict[str, str] = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"bad parameter {text!r}; expected KEY=VALUE, e.g. eps=0.3")
        parsed[key.strip()] = value.strip()
    return parsed


def build_params(params_cls: type[P], overrides: Mapping[str, Any] | None = None) -> P:
    """An instance of `params_cls` with `overrides` (text or values) applied and validated."""
    values = {key: _convert(params_cls, key, value) for key, value in (overrides or {}).items()}
    params = params_cls(**values)
    validate = getattr(params, "validate", None)
    if callable(validate):
        validate()
    return params
