"""Request parameter checks and paging, with messages like MTurk's ("Value ... at ... failed")."""

from __future__ import annotations

import base64
import hashlib
from decimal import Decimal, InvalidOperation
from typing import Any

from markets.mturk.fake.faults import Fault, request_error

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def require(params: dict[str, Any], *names: str) -> None:
    missing = [name for name in names if params.get(name) in (None, "")]
    if missing:
        raise Fault(
            "ValidationException",
            f"1 validation error detected: Value null at '{missing[0]}' "
            "failed to satisfy constraint: Member must not be null",
        )


def integer(
    params: dict[str, Any], name: str, low: int, high: int, *, default: int | None = None
) -> int:
    value = params.get(name, default)
    if value is None:
        raise Fault(
            "ValidationException",
            f"Value null at '{name}' failed to satisfy constraint: Member must not be null",
        )
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise request_error(
            f"Value {value!r} at '{name}' failed to satisfy constraint: "
            f"must be an integer in [{low}, {high}]"
        )
    return value


def text(params: dict[str, Any], name: str, max_length: int, *, required: bool = True) -> str:
    value = params.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > max_length:
        raise request_error(
            f"Value at '{name}' failed to satisfy constraint: "
            f"a string of 1 to {max_length} characters"
        )
    return value


def money(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation as error:
        raise request_error(f"Reward {value!r} is not a valid amount.") from error
    if amount < Decimal("0.01") or amount != amount.quantize(Decimal("0.01")):
        raise request_error(f"Reward {value!r} must be at least 0.01 with at most two decimals.")
    return amount


def digest_id(text: str) -> str:
    raw = base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()
    return "".join(c for c in raw if c in ID_ALPHABET)[:29]


def paginate(items: list[Any], params: dict[str, Any]) -> tuple[list[Any], dict[str, str]]:
    size = integer(params, "MaxResults", 1, 100, default=10)
    token = params.get("NextToken")
    try:
        start = int(base64.b64decode(token).decode()) if token else 0
    except (ValueError, UnicodeDecodeError) as error:
        raise request_error("NextToken is not valid.") from error
    page = items[start : start + size]
    following = start + size
    return page, (
        {"NextToken": base64.b64encode(str(following).encode()).decode()}
        if following < len(items)
        else {}
    )
