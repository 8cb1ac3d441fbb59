"""A study's slug: its name in URLs, commands and the database, under one rule.

Import refuses a slug outside the rule; the routes take any short string as `Slug` and
answer an unknown one with 404, so a malformed slug reads like a missing study (no hint of
the rule to someone probing URLs).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path

SLUG_MAX_LENGTH = 64
SLUG_PATTERN = re.compile(rf"^[a-z0-9][a-z0-9-]{{0,{SLUG_MAX_LENGTH - 1}}}$")
SLUG_RULE = (
    f"lowercase letters, digits and '-', starting with a letter or digit, at most {SLUG_MAX_LENGTH}"
)

Slug = Annotated[str, Path(max_length=SLUG_MAX_LENGTH)]


def is_slug(text: str) -> bool:
    return SLUG_PATTERN.match(text) is not None
