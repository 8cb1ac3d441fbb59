"""The Prolific client against the loopback fake: the token, retries with backoff on 429 and
5xx (never a blind repeat of a create or a payment), paged lists, Prolific's own words in
every refusal, and money as exact decimals."""

from __future__ import annotations

from decimal import Decimal

import pytest

from markets.prolific import errors
from markets.prolific.client import API
from markets.prolific.models import minor_units, to_minor
from tests.fixtures.prolific import make_client, settings_on


def test_without_a_token_nothing_is_sent(fake_prolific):
    recording = make_client(settings_on(fake_prolific, token=None))
    with pytest.raises(errors.MissingToken, match="ADVCRITIC_PROLIFIC_TOKEN"):
        recording.client.balance(fake_prolific.workspace_id)
    assert fake_prolific.fake.calls == []


def test_a_wrong_token_is_refused_with_prolifics_words(fake_prolific):
    recording = make_client(settings_on(fake_prolific, token="not-the-token"))
    with pytest.raises(errors.BadToken) as refused:
        recording.client.balance(fake_prolific.workspace_id)
    assert "HTTP 401" in str(refused.value) and "Invalid token." in str(refused.value)
    assert "ADVCRITIC_PROLIFIC_TOKEN" in str(refused.value) and recording.sleeps == []


def test_429_is_retried_after_the_time_prolific_asks(fake_prolific, prolific_client):
    fake_prolific.fake.inject_faults(429, 429, retry_after=2)
    balance = prolific_client.client.balance(fake_prolific.workspace_id)
    assert balance.available_balance == Decimal(1_000_000)
    assert prolific_client.sleeps == [2.0, 2.0]


def test_server_errors_are_retried_with_growing_jittered_backoff_then_given_up(
    fake_prolific, prolific_client
):
    fake_prolific.fake.inject_faults(503, 500)
    prolific_client.client.balance(fake_prolific.workspace_id)
    first, second = prolific_client.sleeps
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0
    fake_prolific.fake.inject_faults(*[503] * 4)  # max_retries is 3
    with pytest.raises(errors.ServiceFault, match="running the same command again is safe"):
        prolific_client.client.balance(fake_prolific.workspace_id)


def test_creating_and_paying_are_never_repeated_blindly(fake_prolific, prolific_client):
    fake_prolific.fake.inject_faults(500)
    with pytest.raises(errors.ServiceFault):
        prolific_client.client.create_bonuses("6650" + "0" * 20, "x,1")
    fake_prolific.fake.inject_faults(502)
    with pytest.raises(errors.ServiceFault):
        prolific_client.client.pay_bonuses("6650" + "1" * 20)
    assert fake_prolific.fake.calls_of("create_bonuses") == 1
    assert fake_prolific.fake.calls_of("pay_bonuses") == 1 and prolific_client.sleeps == []
    # A 429 was refused before anything happened: that one is retried, even for a payment.
    fake_prolific.fake.inject_faults(429, retry_after=0)
    with pytest.raises(errors.NotFound, match="Bulk bonus payment .* not found"):
        prolific_client.client.pay_bonuses("6650" + "1" * 20)
    assert fake_prolific.fake.calls_of("pay_bonuses") == 3


def test_lists_follow_prolifics_next_links(fake_prolific, prolific_client):
    fake = fake_prolific.fake
    fake.page_size = 2
    body = {
        "name": "n",
        "description": "d",
        "external_study_url": "https://x/?p={{%PROLIFIC_PID%}}",
        "prolific_id_option": "url_parameters",
        "total_available_places": 1,
        "estimated_completion_time": 1,
        "reward": 100,
        "device_compatibility": ["desktop"],
        "completion_codes": [
            {"code": "A", "code_type": "COMPLETED", "actions": [{"action": "MANUALLY_REVIEW"}]}
        ],
    }
    for n in range(5):
        fake.create_study({**body, "internal_name": f"study {n}"})
    fake.calls.clear()
    names = [s.internal_name for s in prolific_client.client.iter_studies()]
    assert names == [f"study {n}" for n in range(5)] and fake.calls_of("list_studies") == 3
    assert prolific_client.client.find_study("study 4").internal_name == "study 4"
    assert prolific_client.client.find_study("study 9") is None


def test_an_unreachable_api_is_a_clear_refusal_after_the_retries(fake_prolific):
    recording = make_client(settings_on(fake_prolific, api_url="http://127.0.0.1:9", max_retries=2))
    with pytest.raises(errors.Unreachable, match="cannot reach Prolific at http://127.0.0.1:9"):
        recording.client.get_study("6650" + "0" * 20)
    assert len(recording.sleeps) == 2


def test_the_fake_reads_prolifics_field_names_and_says_what_is_missing(
    fake_prolific, prolific_client
):
    with pytest.raises(errors.RequestRejected) as refused:
        prolific_client.client._call("POST", f"{API}/studies/", "create study", repeatable=False)
    assert "HTTP 400" in str(refused.value) and "external_study_url" in str(refused.value)


def test_money_is_exact():
    assert minor_units(1333.0) == Decimal("13.33") and minor_units("50") == Decimal("0.50")
    assert to_minor(Decimal("1.25")) == 125
    with pytest.raises(ValueError, match="fractions of a cent"):
        to_minor(Decimal("1.255"))
