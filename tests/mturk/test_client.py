"""The boto3 wrapper: errors keyed on AWS's codes, backoff on throttling, paging, plain records."""

from __future__ import annotations

from decimal import Decimal

import pytest

from markets.mturk import errors
from markets.mturk.fake import Fault
from markets.mturk.question import external_question_xml
from markets.mturk.records import Hit, HitTypeSpec
from tests.fixtures.mturk import make_client

SPEC = HitTypeSpec("Label digits", "Look and label", "digits", Decimal("0.50"), 600, 3600)
QUESTION = external_question_xml("https://study.example.org/hit/s", 600)


def _hit(client, token: str) -> Hit:
    type_id = client.create_hit_type(SPEC)
    return client.create_hit(
        hit_type_id=type_id,
        question=QUESTION,
        lifetime_s=3600,
        annotation=token,
        unique_request_token=token,
    )


def test_throttling_is_retried_with_growing_backoff_then_succeeds(fake_mturk, mturk_client):
    fake_mturk.fake.throttle_next(3)  # settings allow 3 retries
    assert mturk_client.client.balance().available == Decimal("10000.00")
    assert len(mturk_client.sleeps) == 3
    base = [0.5, 1.0, 2.0]  # base * 2**attempt, with 'equal jitter' in [half, all] of it
    assert all(b / 2 <= s <= b for s, b in zip(mturk_client.sleeps, base, strict=True))
    assert fake_mturk.fake.calls_of("GetAccountBalance") == 4


def test_throttling_that_outlasts_the_retries_is_a_clear_error(fake_mturk, mturk_client):
    fake_mturk.fake.throttle_next(10)
    with pytest.raises(errors.Throttled, match="ThrottlingException.*run the same command again"):
        mturk_client.client.balance()
    assert len(mturk_client.sleeps) == 3


def test_service_faults_are_retried_but_request_errors_are_not(fake_mturk, mturk_client):
    fake_mturk.fake.inject_faults(Fault("ServiceFault", "internal error", status=500))
    assert mturk_client.client.balance().available > 0
    with pytest.raises(errors.RequestRejected, match="HITDoesNotExist"):
        mturk_client.client.get_hit("3NOSUCH")
    assert len(mturk_client.sleeps) == 1


@pytest.mark.parametrize(
    ("session", "message"),
    [
        ({"secret": "wrong"}, "InvalidSignatureException.*AWS_SECRET_ACCESS_KEY"),
        ({"access_key": "AKIDNOBODY0000000000"}, "UnrecognizedClientException.*AWS_ACCESS_KEY_ID"),
    ],
)
def test_bad_credentials_say_so_and_what_to_check(fake_mturk, mturk_settings, session, message):
    client = make_client(fake_mturk, mturk_settings, **session).client
    with pytest.raises(errors.BadCredentials, match=message):
        client.balance()


def test_insufficient_funds_is_its_own_error_keyed_on_mturks_code(fake_mturk, mturk_client):
    fake_mturk.fake.set_balance("0.10")
    with pytest.raises(errors.InsufficientFunds, match="InsufficientFunds.*add prepaid funds"):
        _hit(mturk_client.client, "tok-funds")
    assert fake_mturk.fake.hit_ids() == []


def test_a_reused_request_token_is_a_duplicate_request_not_a_second_hit(fake_mturk, mturk_client):
    first = _hit(mturk_client.client, "tok-dup")
    with pytest.raises(errors.DuplicateRequest):
        _hit(mturk_client.client, "tok-dup")
    assert fake_mturk.fake.hit_ids() == [first.hit_id]


def test_lists_are_paged_through_and_come_back_as_plain_records(fake_mturk, mturk_client):
    client = mturk_client.client
    made = [_hit(client, f"tok-{i}").hit_id for i in range(230)]
    listed = list(client.iter_hits())
    assert [h.hit_id for h in listed] == made
    assert fake_mturk.fake.calls_of("ListHITs") == 3  # pages of 100
    hit = listed[0]
    assert (hit.status, hit.max_assignments, hit.available, hit.reward) == (
        "Assignable",
        1,
        1,
        Decimal("0.50"),
    )
    assert hit.expires_at.tzinfo is not None and hit.expires_at.utcoffset().total_seconds() == 0
    assert hit.annotation == "tok-0"


def test_the_endpoint_is_the_sandbox_unless_live_is_asked_for():
    from markets.mturk.client import MTurkClient
    from study_server.settings import MTURK_LIVE_ENDPOINT, MTURK_SANDBOX_ENDPOINT, MTurkSettings

    assert MTurkClient(MTurkSettings()).endpoint_url == MTURK_SANDBOX_ENDPOINT
    assert MTurkClient(MTurkSettings(), sandbox=False).endpoint_url == MTURK_LIVE_ENDPOINT
    assert (
        MTurkClient(MTurkSettings(endpoint_url="http://127.0.0.1:1")).endpoint_url
        == "http://127.0.0.1:1"
    )


def test_an_unreachable_endpoint_is_a_clear_error(mturk_settings):
    import boto3

    from markets.mturk.client import MTurkClient

    session = boto3.session.Session(
        aws_access_key_id="A", aws_secret_access_key="B", region_name="us-east-1"
    )
    client = MTurkClient(
        mturk_settings.model_copy(update={"endpoint_url": "http://127.0.0.1:9"}), session=session
    )
    with pytest.raises(
        errors.EndpointUnreachable, match="cannot reach MTurk at http://127.0.0.1:9"
    ):
        client.balance()
