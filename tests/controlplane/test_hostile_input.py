"""Hostile input gets a clear 4xx naming what is wrong, and nothing is stored."""

import json
from typing import Any

import pytest
from django.test import Client

from controlplane.models import Decision, Role, ServiceAccount
from mutations.models import RuntimeEvent
from tests.conftest import load_fixture

pytestmark = pytest.mark.django_db
URL = "/api/v1/decisions/"


@pytest.fixture
def api(client: Client, member: Any, agent: ServiceAccount) -> Client:
    client.force_login(member("ops", Role.OPERATOR))
    return client


def nothing_stored() -> bool:
    return not Decision.objects.exists() and not RuntimeEvent.objects.exists()


def test_oversized_body_is_refused(api: Client) -> None:
    seed = load_fixture("seed_decision.json")
    seed["reasoning"] = "x" * (600 * 1024)
    response = api.post(URL, json.dumps(seed), content_type="application/json")
    assert 400 <= response.status_code < 500
    assert nothing_stored()


def test_long_field_is_refused_naming_it(api: Client) -> None:
    seed = load_fixture("seed_decision.json")
    seed["reasoning"] = "x" * 10_000
    response = api.post(URL, seed, content_type="application/json")
    assert response.status_code == 400
    assert "reasoning" in response.json()["error"]["fields"]
    assert nothing_stored()


@pytest.mark.parametrize("body", ["{", "[", '{"id": }', "null", '"text"', "\x00\x01"])
def test_malformed_json_is_refused(api: Client, body: str) -> None:
    response = api.post(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["message"]
    assert nothing_stored()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x"]
)
def test_wrong_content_type_is_refused(api: Client, content_type: str) -> None:
    body = json.dumps(load_fixture("seed_decision.json"))
    response = api.post(URL, body, content_type=content_type)
    assert response.status_code == 415
    assert content_type.split(";")[0] in response.json()["error"]["message"]
    assert nothing_stored()


def test_unknown_fields_are_named(api: Client) -> None:
    seed = {**load_fixture("seed_decision.json"), "sneaky": 1, "status": "completed"}
    response = api.post(URL, seed, content_type="application/json")
    assert response.status_code == 400
    assert {"sneaky", "status"} <= set(response.json()["error"]["fields"])
    assert nothing_stored()


def test_approval_comment_must_be_text(api: Client, member: Any) -> None:
    api.force_login(member("ann", Role.APPROVER))
    response = api.post(
        "/api/v1/runs/wf_00000000000000000000000000/approve/",
        {"comment": ["x"]},
        content_type="application/json",
    )
    assert response.status_code == 404  # an unknown run is looked up before the body


@pytest.mark.parametrize(
    "bad", ["dec_\x00", "%00", "dec_01J1B7K9C8N3RXQK9VPYZW2QF\u00ad", "x" * 500]
)
def test_odd_ids_are_not_found(api: Client, bad: str) -> None:
    assert api.get("/api/v1/mutations/", {"decision_id": bad}).status_code == 404
    assert api.get("/api/v1/events/", {"decision_id": bad}).status_code == 404
    assert api.get(f"/decisions/{bad.replace('%', '%25')}/").status_code == 404


def test_any_utc_offset_python_reads_is_stored_in_utc(api: Client) -> None:
    """PostgreSQL's offsets stop at 15:59; ISO 8601 and Python's go to 23:59."""
    document = {**load_fixture("seed_decision.json"), "computed_at": "2026-04-22T18:12:11+18:03"}
    response = api.post("/api/v1/decisions/", document, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["computed_at"] == "2026-04-22T18:12:11+18:03"  # as sent
    stored = Decision.objects.get(pk=document["id"]).computed_at
    assert stored.isoformat() == "2026-04-22T00:09:11+00:00"


def test_nul_anywhere_in_the_action_is_refused_naming_where(api: Client) -> None:
    document = load_fixture("seed_decision.json")
    document["action"]["scope"] = {"market": "all", "re\x00gion": "eu"}
    response = api.post("/api/v1/decisions/", document, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "action.scope.'re\\x00gion'": ["Must not contain the NUL character."]
    }
    assert nothing_stored()
