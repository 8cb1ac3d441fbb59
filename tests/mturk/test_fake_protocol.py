"""The fake speaks MTurk's wire protocol: JSON 1.1, X-Amz-Target, SigV4, AWS error bodies.

These tests look at the bytes on the wire (httpx) and at what boto3 makes of them, so the
`mturk` tests that run against the fake exercise the same client code paths as the sandbox.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from markets.mturk.question import EXTERNAL_QUESTION_NS

TARGET = "MTurkRequesterServiceV20170117"
QUESTION = (
    f'<ExternalQuestion xmlns="{EXTERNAL_QUESTION_NS}">'
    "<ExternalURL>https://a.example.org/hit</ExternalURL><FrameHeight>600</FrameHeight>"
    "</ExternalQuestion>"
)


def test_boto3_calls_arrive_as_json_11_with_the_mturk_target_and_parse_back(fake_mturk):
    seen: list[dict] = []
    client = fake_mturk.boto_session().client("mturk", endpoint_url=fake_mturk.url)
    client.meta.events.register(
        "before-send.mturk.*", lambda request, **_: seen.append(dict(request.headers))
    )
    balance = client.get_account_balance()
    assert balance["AvailableBalance"] == "10000.00"
    headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in seen[0].items()}
    assert headers["x-amz-target"] == f"{TARGET}.GetAccountBalance"
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/us-east-1/mturk-requester/aws4_request" in headers["authorization"]


def test_errors_are_aws_json_error_bodies_that_boto3_maps_to_its_error_codes(fake_mturk):
    client = fake_mturk.boto_session().client("mturk", endpoint_url=fake_mturk.url)
    with pytest.raises(ClientError) as caught:
        client.get_hit(HITId="3NOSUCHHIT")
    response = caught.value.response
    assert response["Error"]["Code"] == "RequestError"
    assert (
        response["TurkErrorCode"] == "AWS.MechanicalTurk.HITDoesNotExist"
    )  # a modeled field of RequestError
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    ("session", "code"),
    [
        ({"secret": "not-the-secret"}, "InvalidSignatureException"),
        ({"access_key": "AKIDUNKNOWN000000000"}, "UnrecognizedClientException"),
    ],
)
def test_requests_signed_with_wrong_credentials_are_refused_like_aws_does(
    fake_mturk, session, code
):
    client = fake_mturk.boto_session(**session).client("mturk", endpoint_url=fake_mturk.url)
    with pytest.raises(ClientError) as caught:
        client.get_account_balance()
    assert caught.value.response["Error"]["Code"] == code
    assert fake_mturk.fake.calls == []  # refused before the operation ran


def test_raw_requests_without_a_signature_or_with_unknown_targets_are_refused(fake_mturk):
    import httpx

    unsigned = httpx.post(
        fake_mturk.url + "/",
        content=b"{}",
        headers={
            "X-Amz-Target": f"{TARGET}.GetAccountBalance",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    assert unsigned.status_code == 400
    assert json.loads(unsigned.content)["__type"] == "MissingAuthenticationTokenException"
    client = fake_mturk.boto_session().client("mturk", endpoint_url=fake_mturk.url)
    client.meta.events.register(
        "before-sign.mturk.GetAccountBalance",
        lambda request, **_: request.headers.replace_header(
            "X-Amz-Target", f"{TARGET}.MakeMoneyFast"
        ),
    )
    with pytest.raises(ClientError) as caught:
        client.get_account_balance()
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"


def test_hit_type_ids_are_stable_and_request_tokens_are_remembered_for_24_hours(fake_mturk):
    client = fake_mturk.boto_session().client("mturk", endpoint_url=fake_mturk.url)
    spec = {"AssignmentDurationInSeconds": 600, "Reward": "0.50", "Title": "t", "Description": "d"}
    first, again = (
        client.create_hit_type(**spec)["HITTypeId"],
        client.create_hit_type(**spec)["HITTypeId"],
    )
    assert first == again != client.create_hit_type(**{**spec, "Reward": "0.60"})["HITTypeId"]
    question = QUESTION
    hit = client.create_hit_with_hit_type(
        HITTypeId=first, LifetimeInSeconds=3600, Question=question, UniqueRequestToken="tok-1"
    )
    with pytest.raises(ClientError) as caught:
        client.create_hit_with_hit_type(
            HITTypeId=first, LifetimeInSeconds=3600, Question=question, UniqueRequestToken="tok-1"
        )
    assert caught.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.HitAlreadyExists"
    assert hit["HIT"]["HITId"] in caught.value.response["Error"]["Message"]
    fake_mturk.fake.advance(
        24 * 3600 + 1
    )  # MTurk forgets tokens after a day: a retry then duplicates
    client.create_hit_with_hit_type(
        HITTypeId=first, LifetimeInSeconds=3600, Question=question, UniqueRequestToken="tok-1"
    )
    assert len(fake_mturk.fake.hit_ids()) == 2


def test_only_submitted_work_is_listed_and_approval_follows_mturks_states(fake_mturk):
    fake = fake_mturk.fake
    client = fake_mturk.boto_session().client("mturk", endpoint_url=fake_mturk.url)
    type_id = client.create_hit_type(
        AssignmentDurationInSeconds=600,
        Reward="0.50",
        Title="t",
        Description="d",
        AutoApprovalDelayInSeconds=3600,
    )["HITTypeId"]
    question = QUESTION
    hit_id = client.create_hit_with_hit_type(
        HITTypeId=type_id, LifetimeInSeconds=3600, Question=question
    )["HIT"]["HITId"]
    assignment_id, url = fake.accept(hit_id, "AWORKER1")
    assert (
        "assignmentId=" + assignment_id in url
        and "workerId=AWORKER1" in url
        and "turkSubmitTo=" in url
    )
    assert (
        client.list_assignments_for_hit(HITId=hit_id)["Assignments"] == []
    )  # accepted is not listed
    assert client.get_hit(HITId=hit_id)["HIT"]["HITStatus"] == "Unassignable"
    with pytest.raises(ClientError):
        client.approve_assignment(AssignmentId=assignment_id)  # not submitted yet
    fake.external_submit({"assignmentId": [assignment_id], "done": ["1"]})
    listed = client.list_assignments_for_hit(HITId=hit_id)["Assignments"]
    assert [(a["AssignmentId"], a["WorkerId"], a["AssignmentStatus"]) for a in listed] == [
        (assignment_id, "AWORKER1", "Submitted")
    ]
    assert "<FreeText>1</FreeText>" in listed[0]["Answer"]
    fake.advance(3601)  # past the auto-approval delay
    assert (
        client.get_assignment(AssignmentId=assignment_id)["Assignment"]["AssignmentStatus"]
        == "Approved"
    )


def test_the_worker_site_posts_to_external_submit_as_mturk_expects(fake_mturk):
    import httpx

    with httpx.Client(base_url=fake_mturk.url) as site:
        assert (
            site.post("/mturk/externalSubmit", data={"assignmentId": "X"}).status_code == 400
        )  # no other field
        assert (
            site.post("/mturk/externalSubmit", data={"assignmentId": "NOPE", "a": "1"}).status_code
            == 404
        )
        assert (
            site.post("/_worker/accept", json={"hitId": "NOPE", "workerId": "W"}).status_code == 400
        )
