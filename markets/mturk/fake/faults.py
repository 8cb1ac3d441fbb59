"""The fake's error answers, in the shape AWS JSON services send them."""

from __future__ import annotations

from typing import Any


class Fault(Exception):
    """An error answer: AWS error type (``__type``), message, MTurk's TurkErrorCode, HTTP status."""

    def __init__(
        self, error_type: str, message: str, *, turk_code: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.turk_code = turk_code
        self.status = status

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"__type": self.error_type, "Message": self.message}
        if self.turk_code:
            data["TurkErrorCode"] = self.turk_code
        return data


def request_error(message: str, turk_code: str = "AWS.ParameterOutOfRange") -> Fault:
    return Fault("RequestError", message, turk_code=turk_code)
