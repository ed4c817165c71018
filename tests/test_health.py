"""Liveness and readiness probes: anonymous, honest about each dependency, and free of secrets."""

import logging

import pytest
from django.test import Client

READINESS_CHECKS = {"database", "cache", "channel_layer", "celery_broker", "chittyid_authority"}

pytestmark = pytest.mark.django_db


def readiness() -> tuple[int, dict]:
    response = Client().get("/readyz")
    return response.status_code, response.json()


def test_healthz_answers_anonymously_without_touching_dependencies():
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready_on_the_embedded_defaults(settings):
    settings.CHITTYID_ENDPOINT = ""

    status, body = readiness()

    assert status == 200
    assert body["status"] == "ok"
    assert set(body["checks"]) == READINESS_CHECKS
    assert {name: check["status"] for name, check in body["checks"].items()} == dict.fromkeys(
        READINESS_CHECKS, "ok"
    )
    assert body["checks"]["chittyid_authority"]["detail"] == "local"


def test_readyz_is_ready_with_a_reachable_remote_authority(chittyid_authority):
    status, body = readiness()

    assert status == 200
    authority = body["checks"]["chittyid_authority"]
    assert (authority["status"], authority["detail"]) == ("ok", "remote")


def test_a_stopped_remote_authority_degrades_readiness_without_taking_the_node_out(
    chittyid_authority, settings
):
    chittyid_authority.stop()

    status, body = readiness()

    assert status == 200
    assert body["status"] == "degraded"
    failing = {name for name, check in body["checks"].items() if check["status"] != "ok"}
    assert failing == {"chittyid_authority"}
    assert body["checks"]["chittyid_authority"]["required"] is False
    assert "unreachable (ConnectError)" in body["checks"]["chittyid_authority"]["detail"]
    assert settings.CHITTYID_API_KEY not in str(body)


def test_strict_readiness_answers_503_while_degraded(chittyid_authority):
    chittyid_authority.stop()

    response = Client().get("/readyz?strict=1")

    assert response.status_code == 503
    assert response.json()["status"] == "degraded"


def test_strict_readiness_answers_200_when_all_is_well(chittyid_authority):
    response = Client().get("/readyz?strict=1")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_names_a_remote_authority_that_reports_itself_down(chittyid_authority):
    chittyid_authority.down = True

    status, body = readiness()

    assert status == 200
    assert body["status"] == "degraded"
    assert body["checks"]["chittyid_authority"]["status"] == "fail"
    assert "answered HTTP 503" in body["checks"]["chittyid_authority"]["detail"]
    assert all(
        check["status"] == "ok" for name, check in body["checks"].items() if name != "chittyid_authority"
    )


def test_a_failing_check_is_logged_once_per_change_of_state_not_per_probe(chittyid_authority, caplog):
    readiness()  # every check ok: whatever an earlier test left failing has recovered
    caplog.clear()
    chittyid_authority.down = True
    with caplog.at_level(logging.INFO, logger="chittyauth_site.health"):
        for _ in range(5):
            readiness()
        chittyid_authority.down = False
        for _ in range(3):
            readiness()

    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "chittyauth_site.health"]
    assert [level for level, _ in messages] == ["WARNING", "INFO"], messages
    assert messages[0][1].startswith("Readiness check chittyid_authority failed, this node serves degraded")
    assert messages[1][1] == "Readiness check chittyid_authority recovered"
    assert not [r for r in caplog.records if r.name == "django.request"]
