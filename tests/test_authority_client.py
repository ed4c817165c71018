"""The ChittyID authority client against a real loopback authority: it fails closed, and says so."""

import pytest

from identities import authority
from identities.authority import Verdict, verify_chitty_id
from identities.models import Identity
from kernel.errors import AuthorityUnavailable
from tests.conftest import free_port

VALID_ID = "CHITTY-PEO-VALID-1"


def outcome_of(chitty_id: str) -> str:
    """The verdict, or the reason the authority could not be asked."""
    try:
        return verify_chitty_id(chitty_id).verdict.value
    except AuthorityUnavailable as exc:
        return exc.message


def unavailable(chitty_id: str) -> AuthorityUnavailable:
    with pytest.raises(AuthorityUnavailable) as raised:
        verify_chitty_id(chitty_id)
    return raised.value


def test_a_valid_answer_makes_the_id_valid_and_the_bearer_key_is_sent(chittyid_authority):
    chittyid_authority.behaviours[VALID_ID] = "valid"

    answer = verify_chitty_id(VALID_ID)

    assert (answer.verdict, answer.source, answer.is_valid) == (Verdict.VALID, "remote", True)
    [request] = chittyid_authority.requests_for(VALID_ID)
    assert request["path"] == "/v1/verify"
    assert request["authorization"] == "Bearer test-authority-key"


def test_valid_false_is_a_rejection_with_the_authoritys_reason(chittyid_authority):
    chittyid_authority.behaviours["CHITTY-PEO-GONE-1"] = "invalid"

    answer = verify_chitty_id("CHITTY-PEO-GONE-1")

    assert (answer.verdict, answer.is_valid, answer.reason) == (
        Verdict.REJECTED,
        False,
        "revoked by authority",
    )


def test_an_unknown_id_is_not_found(chittyid_authority):
    answer = verify_chitty_id("CHITTY-PEO-NOBODY-1")

    assert (answer.verdict, answer.is_valid) == (Verdict.NOT_FOUND, False)


@pytest.mark.parametrize(
    ("behaviour", "reason_in_message"),
    [
        ("500", "answered HTTP 500"),
        ("slow", "timed out"),
        ("garbage", "the answer was not JSON"),
        ("no_verdict", "the answer had no boolean 'valid'"),
    ],
)
def test_a_broken_answer_is_unavailability_not_a_verdict(chittyid_authority, behaviour, reason_in_message):
    chittyid_authority.behaviours["CHITTY-PEO-BROKEN-1"] = behaviour

    error = unavailable("CHITTY-PEO-BROKEN-1")

    assert "ChittyID authority unavailable" in error.message
    assert reason_in_message in error.message
    assert (error.code, error.http_status) == ("AUTHORITY_UNAVAILABLE", 503)


def test_a_wrong_api_key_is_unavailability_not_a_verdict(chittyid_authority, settings):
    chittyid_authority.behaviours[VALID_ID] = "valid"
    settings.CHITTYID_API_KEY = "not-the-authoritys-key"

    error = unavailable(VALID_ID)

    assert "ChittyID authority unavailable: answered HTTP 401" in error.message
    assert chittyid_authority.requests_for(VALID_ID)[0]["authorization"] == "Bearer not-the-authoritys-key"


def test_a_refused_connection_is_unavailability(chittyid_authority, settings):
    settings.CHITTYID_ENDPOINT = f"http://127.0.0.1:{free_port()}"

    error = unavailable(VALID_ID)

    assert "ChittyID authority unavailable: could not connect (ConnectError)" in error.message


def test_a_stopped_authority_is_unavailability(chittyid_authority):
    chittyid_authority.behaviours[VALID_ID] = "valid"
    assert verify_chitty_id(VALID_ID, bypass_cache=True).is_valid
    chittyid_authority.stop()

    error = unavailable(VALID_ID + "0")

    assert "ChittyID authority unavailable: could not connect" in error.message


def test_every_outcome_is_distinct_and_only_valid_is_valid(chittyid_authority, settings):
    behaviours = ["valid", "invalid", "404", "500", "slow", "garbage", "no_verdict"]
    for n, behaviour in enumerate(behaviours):
        chittyid_authority.behaviours[f"CHITTY-PEO-CASE{n}-A"] = behaviour

    outcomes = [outcome_of(f"CHITTY-PEO-CASE{n}-A") for n in range(len(behaviours))]
    settings.CHITTYID_API_KEY = "wrong"
    outcomes.append(outcome_of("CHITTY-PEO-CASE0-A" + "B"))
    settings.CHITTYID_ENDPOINT = f"http://127.0.0.1:{free_port()}"
    outcomes.append(outcome_of("CHITTY-PEO-CASE0-A" + "C"))

    assert outcomes == [
        "VALID",
        "REJECTED",
        "NOT_FOUND",
        "ChittyID authority unavailable: answered HTTP 500",
        "ChittyID authority unavailable: timed out",
        "ChittyID authority unavailable: the answer was not JSON",
        "ChittyID authority unavailable: the answer had no boolean 'valid'",
        "ChittyID authority unavailable: answered HTTP 401",
        "ChittyID authority unavailable: could not connect (ConnectError)",
    ]
    assert len(set(outcomes)) == len(outcomes)


@pytest.mark.parametrize(("retries", "attempts"), [(0, 1), (1, 2), (3, 4)])
def test_retries_on_server_errors_are_bounded(chittyid_authority, settings, retries, attempts):
    settings.CHITTYID_RETRIES = retries
    chittyid_authority.behaviours["CHITTY-PEO-FIVEHUNDRED-1"] = "500"

    unavailable("CHITTY-PEO-FIVEHUNDRED-1")

    assert len(chittyid_authority.requests_for("CHITTY-PEO-FIVEHUNDRED-1")) == attempts


def test_retries_on_timeouts_are_bounded(chittyid_authority, settings):
    settings.CHITTYID_RETRIES = 2
    settings.CHITTYID_TIMEOUT_SECONDS = 0.2
    chittyid_authority.slow_seconds = 1.0
    chittyid_authority.behaviours["CHITTY-PEO-SLOW-1"] = "slow"

    unavailable("CHITTY-PEO-SLOW-1")

    assert len(chittyid_authority.requests_for("CHITTY-PEO-SLOW-1")) == 3


@pytest.mark.parametrize("behaviour", ["garbage", "valid"])
def test_answers_that_arrived_are_not_retried(chittyid_authority, settings, behaviour):
    settings.CHITTYID_RETRIES = 3
    chittyid_authority.behaviours["CHITTY-PEO-ONCE-1"] = behaviour

    outcome_of("CHITTY-PEO-ONCE-1")

    assert len(chittyid_authority.requests_for("CHITTY-PEO-ONCE-1")) == 1


def test_a_changed_timeout_applies_to_the_next_request(chittyid_authority, settings, monkeypatch):
    """The pooled client must not freeze the timeout it was first built with."""
    monkeypatch.setattr(authority, "_client", None)
    chittyid_authority.slow_seconds = 1.0
    chittyid_authority.behaviours["CHITTY-PEO-SLOW-1"] = "slow"
    settings.CHITTYID_TIMEOUT_SECONDS = 0.2
    assert "timed out" in unavailable("CHITTY-PEO-SLOW-1").message

    settings.CHITTYID_TIMEOUT_SECONDS = 10

    assert verify_chitty_id("CHITTY-PEO-SLOW-1").verdict is Verdict.VALID


@pytest.mark.parametrize(
    ("behaviour", "verdict"),
    [("valid", Verdict.VALID), ("invalid", Verdict.REJECTED), ("404", Verdict.NOT_FOUND)],
)
def test_definitive_answers_are_cached_and_bypass_cache_asks_again(chittyid_authority, behaviour, verdict):
    chittyid_authority.behaviours["CHITTY-PEO-CACHED-1"] = behaviour

    first = verify_chitty_id("CHITTY-PEO-CACHED-1")
    second = verify_chitty_id("CHITTY-PEO-CACHED-1")
    assert len(chittyid_authority.requests_for("CHITTY-PEO-CACHED-1")) == 1
    fresh = verify_chitty_id("CHITTY-PEO-CACHED-1", bypass_cache=True)

    assert first.verdict is second.verdict is fresh.verdict is verdict
    assert len(chittyid_authority.requests_for("CHITTY-PEO-CACHED-1")) == 2


def test_bypass_cache_sees_a_changed_answer_and_refreshes_the_cache(chittyid_authority):
    chittyid_authority.behaviours[VALID_ID] = "valid"
    assert verify_chitty_id(VALID_ID).is_valid
    chittyid_authority.behaviours[VALID_ID] = "invalid"

    assert verify_chitty_id(VALID_ID).is_valid  # still the cached answer
    assert verify_chitty_id(VALID_ID, bypass_cache=True).verdict is Verdict.REJECTED
    assert verify_chitty_id(VALID_ID).verdict is Verdict.REJECTED


def test_unavailability_is_not_cached(chittyid_authority):
    chittyid_authority.behaviours[VALID_ID] = "500"
    unavailable(VALID_ID)
    asked_while_down = len(chittyid_authority.requests_for(VALID_ID))
    chittyid_authority.behaviours[VALID_ID] = "valid"

    assert verify_chitty_id(VALID_ID).is_valid
    assert len(chittyid_authority.requests_for(VALID_ID)) == asked_while_down + 1


# The local authority: identities registered here


@pytest.fixture
def local_authority(settings):
    settings.CHITTYID_ENDPOINT = ""
    return settings


def test_local_authority_vouches_only_for_active_registered_identities(local_authority, make_identity):
    make_identity("CHITTY-PEO-ACTIVE-1")
    make_identity("CHITTY-PEO-SUSPENDED-1", status=Identity.Status.SUSPENDED)
    make_identity("CHITTY-PEO-REVOKED-1", status=Identity.Status.REVOKED)

    active = verify_chitty_id("CHITTY-PEO-ACTIVE-1")
    suspended = verify_chitty_id("CHITTY-PEO-SUSPENDED-1")
    revoked = verify_chitty_id("CHITTY-PEO-REVOKED-1")
    unknown = verify_chitty_id("CHITTY-PEO-NEVERSEEN-1")

    assert (active.verdict, active.source) == (Verdict.VALID, "local")
    assert (suspended.verdict, suspended.reason) == (Verdict.REJECTED, "identity is suspended")
    assert (revoked.verdict, revoked.reason) == (Verdict.REJECTED, "identity is revoked")
    assert (unknown.verdict, unknown.is_valid) == (Verdict.NOT_FOUND, False)


def test_local_authority_answers_from_the_database_at_once(local_authority, make_identity):
    identity = make_identity("CHITTY-PEO-ACTIVE-1")
    assert verify_chitty_id("CHITTY-PEO-ACTIVE-1").is_valid

    Identity.objects.filter(pk=identity.pk).update(status=Identity.Status.SUSPENDED)

    assert verify_chitty_id("CHITTY-PEO-ACTIVE-1").verdict is Verdict.REJECTED
