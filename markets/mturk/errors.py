"""What can go wrong when talking to MTurk, as a small hierarchy keyed on AWS's error codes.

boto3 raises one `ClientError` for everything; callers need to tell "your keys are wrong"
from "top up your account" from "slow down". `translate` maps the error code in
``error.response["Error"]["Code"]`` (and, for MTurk's catch-all ``RequestError``, its
``TurkErrorCode``) to one of the classes below. Message text is only ever shown, never
parsed, because AWS rewords messages freely.
"""

from __future__ import annotations

from botocore.exceptions import ClientError


class MTurkError(Exception):
    """Anything MTurk refused or failed; the message is fit to show to the user as is."""

    code: str = ""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class BadCredentials(MTurkError):
    """The AWS keys are missing, unknown or do not sign correctly."""


class AccessDenied(MTurkError):
    """The keys are valid but the account may not use MTurk (not linked, or no permission)."""


class InsufficientFunds(MTurkError):
    """The requester account's prepaid balance does not cover the HITs."""


class Throttled(MTurkError):
    """MTurk asked us to slow down and kept doing so after every retry."""


class ServiceFault(MTurkError):
    """MTurk failed on its side (worth retrying later)."""


class DuplicateRequest(MTurkError):
    """A UniqueRequestToken was used before: the HIT it names already exists."""


class DuplicateQualificationType(MTurkError):
    """A qualification type with this name already exists for the requester."""


class RequestRejected(MTurkError):
    """MTurk refused the request as invalid (bad parameter, wrong assignment state...)."""


class EndpointUnreachable(MTurkError):
    """No answer from the requester endpoint (network, DNS, wrong endpoint_url)."""


# Error.Code values of AWS JSON services, by what they mean for the user.
_BY_CODE: dict[str, type[MTurkError]] = {
    "UnrecognizedClientException": BadCredentials,
    "InvalidSignatureException": BadCredentials,
    "MissingAuthenticationTokenException": BadCredentials,
    "IncompleteSignatureException": BadCredentials,
    "InvalidClientTokenId": BadCredentials,
    "ExpiredTokenException": BadCredentials,
    "SignatureDoesNotMatch": BadCredentials,
    "AccessDeniedException": AccessDenied,
    "ThrottlingException": Throttled,
    "Throttling": Throttled,
    "TooManyRequestsException": Throttled,
    "ServiceFault": ServiceFault,
    "ServiceUnavailable": ServiceFault,
    "InternalFailure": ServiceFault,
}

# MTurk's RequestError carries a finer TurkErrorCode for some cases.
_BY_TURK_CODE: dict[str, type[MTurkError]] = {
    "AWS.MechanicalTurk.InsufficientFunds": InsufficientFunds,
    "AWS.MechanicalTurk.HitAlreadyExists": DuplicateRequest,
    "AWS.MechanicalTurk.QualificationTypeAlreadyExists": DuplicateQualificationType,
}

_HINTS: dict[type[MTurkError], str] = {
    BadCredentials: (
        "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or --profile) for this requester account"
    ),
    AccessDenied: (
        "link the AWS account to an MTurk requester account and grant it mturk:* permissions"
    ),
    InsufficientFunds: "add prepaid funds to the requester account, or publish fewer HITs",
    Throttled: (
        "MTurk kept throttling after the retries; wait a minute and run the same command again"
    ),
    ServiceFault: "MTurk had an internal error; running the same command again is safe",
}

RETRYABLE: tuple[type[MTurkError], ...] = (Throttled, ServiceFault)


def translate(error: ClientError, operation: str = "") -> MTurkError:
    """The `MTurkError` for a boto3 `ClientError`: a message naming the operation, and a hint."""
    response = error.response or {}
    code = str(response.get("Error", {}).get("Code", ""))
    turk_code = str(response.get("TurkErrorCode", "") or "")
    aws_message = str(response.get("Error", {}).get("Message", "")).strip()
    kind = _BY_TURK_CODE.get(turk_code) or _BY_CODE.get(code) or RequestRejected
    detail = f"{code}{f' ({turk_code})' if turk_code else ''}"
    message = f"MTurk {operation or error.operation_name} failed: {detail}: {aws_message}"
    hint = _HINTS.get(kind)
    if hint:
        message += f" -- {hint}"
    return kind(message, code=turk_code or code, operation=operation or error.operation_name)
