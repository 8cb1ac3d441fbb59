"""Checking AWS Signature Version 4 on requests to the fake, so bad credentials fail as on AWS.

Written from the published algorithm (canonical request -> string to sign -> HMAC chain),
independently of botocore's signer, so a test that passes here proves boto3 really signed
the request with the secret we expect.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from markets.mturk.fake.faults import Fault

SERVICE = "mturk-requester"
MAX_CLOCK_SKEW_S = 15 * 60


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _parse_authorization(header: str) -> dict[str, str]:
    algorithm, _, rest = header.partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise Fault(
            "IncompleteSignatureException", f"Unsupported signature algorithm {algorithm!r}"
        )
    fields = {}
    for part in rest.split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        raise Fault(
            "IncompleteSignatureException",
            "Authorization header requires Credential, SignedHeaders and Signature",
        )
    return fields


def verify(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Mapping[str, str],
    region: str,
) -> str:
    """The access key id of a correctly signed request; a `Fault` like AWS's otherwise."""
    lower = {name.lower(): value for name, value in headers.items()}
    header = lower.get("authorization")
    if not header:
        raise Fault("MissingAuthenticationTokenException", "Missing Authentication Token")
    fields = _parse_authorization(header)
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise Fault(
            "IncompleteSignatureException", f"Credential {fields['Credential']!r} is malformed"
        )
    access_key, day, scope_region, service, _ = scope
    secret = credentials.get(access_key)
    if secret is None:
        raise Fault(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    if scope_region != region or service != SERVICE:
        raise Fault(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region ({region}) and service ({SERVICE}).",
        )
    stamp = lower.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError as error:
        raise Fault(
            "IncompleteSignatureException", "X-Amz-Date header is missing or malformed"
        ) from error
    if abs((datetime.now(UTC) - signed_at).total_seconds()) > MAX_CLOCK_SKEW_S:
        raise Fault(
            "InvalidSignatureException",
            "Signature expired: the request time is more than 15 minutes off.",
        )
    signed_names = fields["SignedHeaders"].split(";")
    if "host" not in signed_names:
        raise Fault("InvalidSignatureException", "The host header must be signed.")
    payload_hash = hashlib.sha256(body).hexdigest()
    canonical_headers = "".join(
        f"{name}:{' '.join(lower.get(name, '').split())}\n" for name in signed_names
    )
    canonical_query = "&".join(sorted(query.split("&"))) if query else ""
    canonical_request = "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query,
            canonical_headers,
            fields["SignedHeaders"],
            payload_hash,
        ]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            stamp,
            f"{day}/{scope_region}/{service}/aws4_request",
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{secret}".encode(), day)
    for part in (scope_region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, fields["Signature"]):
        raise Fault(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return access_key
