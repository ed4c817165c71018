"""`GET /metrics` through Django: who may scrape it, and counters that move by exactly the traffic sent, read
with Prometheus's own text parser. Counters are process-wide, so each test compares two scrapes."""

import pytest
from django.db import OperationalError, connection
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from audit.models import AuditChainHead
from grants.services import grant_permission
from identities.authority import Verdict, verify_chitty_id
from jobs.services import run_cleanup
from kernel.callers import Caller
from kernel.errors import AuthorityUnavailable
from keys.services import generate_api_key
from principals.services import register_identity
from sessions.models import AuthSession
from tests.conftest import free_port
from tests.test_rest_api import bearer

pytestmark = pytest.mark.django_db

SYSTEM = Caller.system("tests")
SCRAPER = "CHITTY-PEO-SCRAPER-1"
USER = "CHITTY-PEO-METRICS-1"


def samples(text: str, parser=text_string_to_metric_families) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in parser(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def key_for(chitty_id: str, *permissions: str) -> str:
    register_identity(SYSTEM, chitty_id)
    for permission in permissions:
        grant_permission(SYSTEM, grantee_chitty_id=chitty_id, permission=permission)
    return generate_api_key(SYSTEM, chitty_id=chitty_id, name="metrics test").secret


@pytest.fixture
def scraper() -> APIClient:
    return bearer(key_for(SCRAPER, "metrics:read"))


def scrape(client: APIClient) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return samples(response.content.decode())


def test_scraping_needs_a_bearer_holding_metrics_read():
    anonymous = APIClient().get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "UNAUTHENTICATED"

    refused = bearer(key_for(USER, "audit:read")).get("/metrics")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
    assert "metrics:read" in refused.json()["error"]["message"]


def test_a_scraper_that_accepts_only_openmetrics_gets_openmetrics(scraper):
    response = scraper.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    scraped = samples(response.content.decode(), openmetrics_families)
    assert value(scraped, "chittyauth_audit_chain_length") == AuditChainHead.objects.get().sequence


def test_with_metrics_off_there_is_no_endpoint(scraper, settings):
    settings.METRICS_ENABLED = False
    response = scraper.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_verifications_and_permission_checks_count_exactly_the_traffic(scraper):
    user_key = key_for(USER, "api_keys:validate", "permissions:check")
    user = bearer(user_key)
    before = scrape(scraper)

    for _ in range(3):
        assert user.post("/api/v1/keys/validate", {"api_key": user_key}, format="json").json()["valid"]
    for bad in ("chitty_live_" + "A" * 49, "not a key"):
        assert not user.post("/api/v1/keys/validate", {"api_key": bad}, format="json").json()["valid"]
    allowed = user.post("/api/v1/permissions/check", {"chitty_id": USER, "permission": "permissions:check"})
    denied = user.post("/api/v1/permissions/check", {"chitty_id": USER, "permission": "audit:read"})
    assert (allowed.json()["allowed"], denied.json()["allowed"]) == (True, False)
    forged_token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert APIClient().get("/api/v1/whoami", HTTP_AUTHORIZATION=f"Bearer {forged_token}").status_code == 401

    after = scrape(scraper)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    verifications = {
        (dict(labels)["credential_type"], dict(labels)["outcome"]): count - before.get((name, labels), 0)
        for (name, labels), count in after.items()
        if name == "chittyauth_credential_verifications_total" and count != before.get((name, labels), 0)
    }
    # 3 keys validated, 7 requests' bearers and the second scrape's own bearer; two bad keys; one bad JWT.
    assert verifications == {
        ("api_key", "VALID"): 11,
        ("api_key", "BAD_CHECKSUM"): 1,
        ("api_key", "MALFORMED"): 1,
        ("jwt", "BAD_SIGNATURE"): 1,
    }
    assert moved("chittyauth_permission_checks_total", outcome="allowed") == 1
    assert moved("chittyauth_permission_checks_total", outcome="denied") == 1
    assert moved("chittyauth_cache_lookups_total", cache="api_keys", result="hit") >= 1
    assert (
        value(after, "chittyauth_sessions_live") == AuthSession.objects.filter(ended_at__isnull=True).count()
    )
    assert value(after, "chittyauth_audit_chain_length") == AuditChainHead.objects.get().sequence


def test_with_the_database_down_a_scrape_still_serves_every_process_series(scraper):
    assert value(scrape(scraper), "chittyauth_database_readable") == 1

    def unreachable(execute, sql, params, many, context):
        raise OperationalError("could not connect to server: Connection refused")

    with connection.execute_wrapper(unreachable):
        scraped = scrape(scraper)  # the scraper's bearer is answered from memory
    assert value(scraped, "chittyauth_database_readable") == 0
    assert ("chittyauth_sessions_live", ()) not in scraped
    assert value(
        scraped, "chittyauth_credential_verifications_total", credential_type="api_key", outcome="VALID"
    )


def test_authority_calls_are_counted_by_outcome(scraper, chittyid_authority, settings):
    chittyid_authority.slow_seconds = 1.0  # past CHITTYID_TIMEOUT_SECONDS
    answers = {"valid": "valid", "invalid": "rejected", "404": "not_found", "garbage": "unusable_answer"}
    answers |= {"500": "server_error", "slow": "timeout"}
    for behaviour in answers:
        chittyid_authority.behaviours[f"CHITTY-PEO-{behaviour.upper()}-1"] = behaviour
    before = scrape(scraper)

    register_identity(SYSTEM, "CHITTY-PEO-VALID-1")
    with pytest.raises(Exception, match="unavailable"):
        register_identity(SYSTEM, "CHITTY-PEO-500-1")
    assert verify_chitty_id("CHITTY-PEO-INVALID-1", bypass_cache=True).verdict == Verdict.REJECTED
    assert verify_chitty_id("CHITTY-PEO-404-1", bypass_cache=True).verdict == Verdict.NOT_FOUND
    for failing in ("CHITTY-PEO-GARBAGE-1", "CHITTY-PEO-SLOW-1"):
        with pytest.raises(AuthorityUnavailable):
            verify_chitty_id(failing, bypass_cache=True)
    settings.CHITTYID_API_KEY = "not-the-authoritys-key"  # answered 401
    with pytest.raises(AuthorityUnavailable):
        verify_chitty_id("CHITTY-PEO-VALID-1", bypass_cache=True)
    settings.CHITTYID_ENDPOINT = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(AuthorityUnavailable):
        verify_chitty_id("CHITTY-PEO-VALID-1", bypass_cache=True)

    after = scrape(scraper)
    calls = {
        outcome: value(after, "chittyauth_authority_calls_total", outcome=outcome)
        - value(before, "chittyauth_authority_calls_total", outcome=outcome)
        for outcome in [*answers.values(), "client_error", "connect_error"]
    }
    # CHITTYID_RETRIES=1: what may pass with time (a 5xx, a timeout, no connection) is tried twice.
    assert calls == {
        "valid": 1,
        "rejected": 1,
        "not_found": 1,
        "unusable_answer": 1,
        "server_error": 2,
        "timeout": 2,
        "client_error": 1,
        "connect_error": 2,
    }
    duration = "chittyauth_authority_call_duration_seconds_count"
    assert value(after, duration) - value(before, duration) == sum(calls.values())


def test_job_runs_are_counted_with_their_duration(scraper):
    before = scrape(scraper)
    run_cleanup(SYSTEM)
    after = scrape(scraper)
    runs = "chittyauth_job_runs_total"
    assert (
        value(after, runs, job="cleanup", outcome="success")
        - value(before, runs, job="cleanup", outcome="success")
        == 1
    )
    duration = "chittyauth_job_run_duration_seconds_count"
    assert value(after, duration, job="cleanup") - value(before, duration, job="cleanup") == 1


def test_a_job_run_whose_record_cannot_be_written_is_still_counted(scraper):
    """The database refuses the run's final write: the run counts once, as unrecorded."""

    def refuse_the_record(execute, sql, params, many, context):
        if sql.startswith('UPDATE "jobs_jobrun"'):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    before = scrape(scraper)
    with connection.execute_wrapper(refuse_the_record), pytest.raises(OperationalError):
        run_cleanup(SYSTEM)
    after = scrape(scraper)
    runs = {
        outcome: value(after, "chittyauth_job_runs_total", job="cleanup", outcome=outcome)
        - value(before, "chittyauth_job_runs_total", job="cleanup", outcome=outcome)
        for outcome in ("success", "failure", "unrecorded")
    }
    assert runs == {"success": 0, "failure": 0, "unrecorded": 1}
