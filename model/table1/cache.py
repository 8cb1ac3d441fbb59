"""Table 1's evaluation cache: one file per (checkpoint, attack, settings, images), not per preset.

A preset names several attacks; keying the cache by the whole preset meant that adding a
column (or changing one attack's settings) re-ran every attack on every checkpoint, hours
of CPU for the CW column alone. Each entry here is one attack's summary, keyed by

    checkpoint SHA-256, attack name, the attack's full hyperparameters (the overrides merged
    into the constructor's defaults), the rho policy, the image limit and the test-split size,

so a preset that adds `hc-authors` runs only `hc-authors`, and the cpu and paper presets
share their identical DeepFool entries. The checkpoint's test error is an entry of its own.

Entries live in `table1-cache/` beside the checkpoint, one JSON file each, named by a
digest of the key and holding the key itself (checked on read, so a digest collision or a
hand-edited file cannot answer for another key). Files of the previous, per-preset format
(`table1-<preset>.json` beside the checkpoint) are still read: an attack whose settings and
limit they recorded is taken from them and copied into the new layout.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

from model.attacks.registry import ATTACKS, canonical_attack_name
from model.table1.results import AttackSummary

CACHE_DIR = "table1-cache"
CACHE_FORMAT = "advcritic-table1-entry"
LEGACY_PATTERN = "table1-*.json"


def attack_settings(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Every hyperparameter of attack `name` with `overrides` applied (TypeError if unknown)."""
    signature = inspect.signature(ATTACKS[canonical_attack_name(name)])
    bound = signature.bind(**overrides)
    bound.apply_defaults()
    return dict(sorted(bound.arguments.items()))


def attack_key(
    *,
    checkpoint_sha256: str,
    attack: str,
    overrides: dict[str, Any],
    policy: str,
    limit: int | None,
    test_images: int,
) -> dict[str, Any]:
    """What one attack summary depends on (the identity of a cache entry)."""
    return {
        "kind": "attack",
        "checkpoint_sha256": checkpoint_sha256,
        "attack": attack,
        "settings": attack_settings(attack, overrides),
        "policy": policy,
        "limit": None if limit is None or limit >= test_images else limit,
        "test_images": test_images,
    }


def test_error_key(*, checkpoint_sha256: str, dataset: str, test_images: int) -> dict[str, Any]:
    return {
        "kind": "test_error",
        "checkpoint_sha256": checkpoint_sha256,
        "dataset": dataset,
        "test_images": test_images,
    }


def _canonical(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def entry_path(checkpoint: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(_canonical(key).encode()).hexdigest()[:20]
    name = key["attack"] if key["kind"] == "attack" else key["kind"]
    return checkpoint.parent / CACHE_DIR / f"{name}-{digest}.json"


def read_entry(checkpoint: Path, key: dict[str, Any]) -> Any | None:
    """The cached value for `key`, or None (missing, damaged, or written for another key)."""
    try:
        data = json.loads(entry_path(checkpoint, key).read_text())
        if data.get("format") != CACHE_FORMAT or _canonical(data["key"]) != _canonical(key):
            return None
        return data["value"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_entry(checkpoint: Path, key: dict[str, Any], value: Any) -> None:
    """Store `value` under `key`, atomically (a reader never sees half a file)."""
    path = entry_path(checkpoint, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "key": key, "value": value}, indent=2))
    os.replace(tmp, path)


def read_summary(checkpoint: Path, key: dict[str, Any]) -> AttackSummary | None:
    value = read_entry(checkpoint, key)
    if value is None:
        value = _legacy_summary(checkpoint, key)
        if value is None:
            return None
        write_entry(checkpoint, key, value)
    try:
        return AttackSummary(**value)
    except TypeError:
        return None


def read_test_error(checkpoint: Path, key: dict[str, Any]) -> float | None:
    value = read_entry(checkpoint, key)
    if value is None:
        value = _legacy_test_error(checkpoint, key)
        if value is None:
            return None
        write_entry(checkpoint, key, value)
    return float(value)


def _legacy_evaluations(checkpoint: Path, sha256: str) -> list[dict[str, Any]]:
    """Per-preset cache files of the previous format that belong to this checkpoint."""
    found = []
    for path in sorted(checkpoint.parent.glob(LEGACY_PATTERN)):
        try:
            data = json.loads(path.read_text())
            if data["checkpoint_sha256"] == sha256 and isinstance(data["settings"], dict):
                found.append(data)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _legacy_summary(checkpoint: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """An attack's summary from an old per-preset file that ran it with the same settings.

    Old files hold only the project's policy (`hc-authors` did not exist then)."""
    if key["policy"] != "project":
        return None
    for data in _legacy_evaluations(checkpoint, key["checkpoint_sha256"]):
        try:
            evaluation = data["evaluation"]
            if evaluation["test_images"] != key["test_images"]:
                continue
            attack = key["attack"]
            overrides = data["settings"]["attacks"][attack]
            limit = data["settings"].get("limits", {}).get(attack)
            if limit is not None and limit >= key["test_images"]:
                limit = None
            if attack_settings(attack, overrides) == key["settings"] and limit == key["limit"]:
                return dict(evaluation["attacks"][attack])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _legacy_test_error(checkpoint: Path, key: dict[str, Any]) -> float | None:
    for data in _legacy_evaluations(checkpoint, key["checkpoint_sha256"]):
        try:
            evaluation = data["evaluation"]
            if (evaluation["dataset"], evaluation["test_images"]) == (
                key["dataset"],
                key["test_images"],
            ):
                return float(evaluation["test_error"])
        except (KeyError, TypeError, ValueError):
            continue
    return None
