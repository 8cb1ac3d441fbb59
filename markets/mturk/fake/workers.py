"""The worker side of the fake: who qualifies for a HIT, the URL the iframe loads, the answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.sax.saxutils import escape

from markets.mturk.records import (
    LOCALE_QUALIFICATION,
    NUMBER_APPROVED_QUALIFICATION,
    PERCENT_APPROVED_QUALIFICATION,
)

ANSWERS_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/"
    "2005-10-01/QuestionFormAnswers.xsd"
)


@dataclass
class WorkerProfile:
    """What MTurk knows about a worker, for the built-in qualification requirements."""

    approval_rate: int = 99
    approved_hits: int = 5000
    country: str = "US"
    qualifications: dict[str, int] = field(default_factory=dict)


def meets(profile: WorkerProfile, requirement: dict[str, Any]) -> bool:
    type_id, comparator = requirement["QualificationTypeId"], requirement["Comparator"]
    if type_id == LOCALE_QUALIFICATION:
        countries = [loc.get("Country") for loc in requirement.get("LocaleValues", [])]
        inside = profile.country in countries
        return inside if comparator in ("EqualTo", "In") else not inside
    if type_id == PERCENT_APPROVED_QUALIFICATION:
        value: int | None = profile.approval_rate
    elif type_id == NUMBER_APPROVED_QUALIFICATION:
        value = profile.approved_hits
    else:
        value = profile.qualifications.get(type_id)
    if comparator == "Exists":
        return value is not None
    if comparator == "DoesNotExist":
        return value is None
    if value is None:
        return False
    wanted = [int(v) for v in requirement.get("IntegerValues", [])]
    checks = {
        "LessThan": lambda: value < wanted[0],
        "LessThanOrEqualTo": lambda: value <= wanted[0],
        "GreaterThan": lambda: value > wanted[0],
        "GreaterThanOrEqualTo": lambda: value >= wanted[0],
        "EqualTo": lambda: value == wanted[0],
        "NotEqualTo": lambda: value != wanted[0],
        "In": lambda: value in wanted,
        "NotIn": lambda: value not in wanted,
    }
    return checks[comparator]()


def with_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


def answer_xml(fields: dict[str, list[str]]) -> str:
    """The submitted form as MTurk's QuestionFormAnswers document (what Assignment.Answer holds)."""
    answers = "".join(
        f"<Answer><QuestionIdentifier>{escape(name)}</QuestionIdentifier>"
        f"<FreeText>{escape(value)}</FreeText></Answer>"
        for name, values in fields.items()
        if name != "assignmentId"
        for value in values
    )
    return (
        f'<?xml version="1.0" encoding="ASCII"?><QuestionFormAnswers xmlns="{ANSWERS_NS}">'
        f"{answers}</QuestionFormAnswers>"
    )
