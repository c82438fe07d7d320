"""Who may read what, for every role against every read endpoint (api/access.py).

Roles: an auditor (AUDITOR_ROLE: everything), the pledge's lender, its borrower (the
receipt's owner), the custodian that issued the receipt, the gateway that signed the
warehouse's events (SUBMITTER_ROLE: what it submitted), another lender with no part in
this pledge, and an outsider with no role. A caller outside its rights gets 403 with the
same body as for an object that does not exist, so it learns nothing about existence.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.history_scene import Scene, scene  # noqa: F401 - the module fixture

# ruff: noqa: F811 - `scene`, imported above, is each test's fixture parameter

ROLES = ("auditor", "lender", "borrower", "custodian", "gateway", "lender2", "outsider")
PARTIES = {"auditor", "lender", "borrower", "custodian"}  # party to the pledge


@pytest.fixture(scope="module")
def targets(scene: Scene) -> dict[str, Any]:
    """Real objects of each kind, and a made-up one of each."""
    history = scene.get(f"/v1/pledges/{scene.pledge_id}/history", "auditor", limit=500).json()
    coil = history["summary"]["custody"]["now"][0]["examples"][0]
    epcis = next(e for e in history["entries"] if e["kind"] == "epcis.receiving")["event_id"]
    alarms = scene.get("/v1/alarms", "auditor").json()["alarms"]
    oracle_alarm = next(a["id"] for a in alarms if a["source"] == "oracle")
    chain_alarm = next(a["id"] for a in alarms if a["source"] == "chain")
    return {
        "pledge": (str(scene.pledge_id), "999"),
        "asset": (coil, "https://id.gs1.org/01/10614141073464/21/9999999"),
        "event": (
            quote(epcis, safe=""),
            quote("ni:///sha-256;" + "0" * 64 + "?ver=CBV2.0", safe=""),
        ),
        "alarm": (oracle_alarm, "no-such-alarm"),
        "chain_alarm": (chain_alarm, "chain:1:0:nothing"),
    }


# endpoint: (url template, kind of object, who may see a real one)
ENDPOINTS: dict[str, tuple[str, str, set[str]]] = {
    "pledge": ("/v1/pledges/{}", "pledge", PARTIES),
    "pledge history": ("/v1/pledges/{}/history?limit=5", "pledge", PARTIES),
    "pledge evidence": ("/v1/pledges/{}/evidence", "pledge", PARTIES),
    # a submitter reads the events it signed, not the goods' whole history
    "asset history": ("/v1/assets/{}/history?limit=5", "asset", PARTIES),
    "event": ("/v1/events/{}", "event", PARTIES | {"gateway"}),
    "event proof": ("/v1/events/{}/proof", "event", PARTIES | {"gateway"}),
    "epcis event": ("/v1/epcis/events/{}", "event", PARTIES | {"gateway"}),
    "alarm": ("/v1/alarms/{}", "alarm", PARTIES),
    "chain alarm": ("/v1/alarms/{}", "chain_alarm", PARTIES),
}


def _body(answer: Any, secret: str) -> str:
    """The answer's body with the requested id blanked: what else could it reveal?"""
    raw = unquote(secret)
    text = str(answer.text)
    for form in (raw, secret, raw.replace("?", "%3F")):
        text = text.replace(form, "<id>")
    return text


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_each_role_sees_exactly_what_it_is_party_to(
    scene: Scene, targets: dict[str, Any], endpoint: str, role: str
) -> None:
    template, kind, allowed = ENDPOINTS[endpoint]
    real, made_up = targets[kind]
    answer = scene.get(template.format(real), role)
    missing = scene.get(template.format(made_up), role)
    if role in allowed:
        assert answer.status_code == 200, answer.text
    else:
        assert answer.status_code == 403, answer.text
        assert code_of(answer) == "not_found_or_forbidden"
        # one answer for "exists but not yours" and "does not exist"
        assert _body(answer, real) == _body(missing, made_up)
    # only who may see everything learns that a thing does not exist
    assert (missing.status_code, code_of(missing)) == (
        (404, "not_found") if role == "auditor" else (403, "not_found_or_forbidden")
    )


def code_of(answer: Any) -> str:
    body = answer.json()
    return str(body["code"] if "type" in body else body["error"]["code"])  # EPCIS: RFC 7807


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_every_read_needs_a_sign_in(scene: Scene, targets: dict[str, Any], endpoint: str) -> None:
    template, kind, _ = ENDPOINTS[endpoint]
    answer = scene.get(template.format(targets[kind][0]), None)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("role", ROLES)
def test_a_batch_shows_its_root_to_all_and_its_events_only_as_far_as_one_may_see(
    scene: Scene, role: str
) -> None:
    proof = scene.get(f"/v1/pledges/{scene.pledge_id}/history", "auditor", limit=1).json()
    bundle = proof["entries"][0]["proof"]["bundle"]
    url = f"/v1/batches/{bundle['batch']['stream']}/{bundle['batch']['seq']}"
    answer = scene.get(url, role)
    assert answer.status_code == 200
    assert answer.json()["root"] == bundle["batch"]["root"]
    ids = answer.json()["event_ids"]
    assert bool(ids) == (role in ("auditor", "gateway"))  # the gateway signed them all
    assert scene.get(url, None).status_code == 401


@pytest.mark.parametrize("role", ROLES)
def test_lists_hold_only_what_the_caller_may_see(
    scene: Scene, targets: dict[str, Any], role: str
) -> None:
    pledges = scene.get("/v1/pledges", role).json()["pledges"]
    alarms = scene.get("/v1/alarms", role).json()["alarms"]
    party = role in PARTIES
    assert [p["pledge_id"] for p in pledges] == ([scene.pledge_id] if party else [])
    assert bool(alarms) == party
    assert all(a["pledge_id"] == scene.pledge_id for a in alarms)

    epcis = scene.get("/v1/epcis/events", role, perPage="100").json()
    events = epcis["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    assert bool(events) == (party or role == "gateway")
    # hidden matches leave no trace: no next page, no token naming a hidden event
    one = scene.get("/v1/epcis/events", role, perPage="1")
    assert ("link" in one.headers) == (party or role == "gateway")

    acknowledge = scene.change_alarm(targets["alarm"][0], "acknowledged", role)
    assert acknowledge.status_code == (200 if party else 403)
