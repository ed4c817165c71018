"""An API key's "last used", use count and hourly verification counts reach the database within the documented
bound on a live daphne, even when nothing else happens afterwards, and a clean stop writes what is pending."""

import json
import time

from tests.mcp_live import ALICE, base_env, daphne_server, manage, rest, service_database

BOUND_SECONDS = 1  # API_KEY_USAGE_WRITE_SECONDS for the first server; the writer adds at most a second
WAIT_FOR_SECONDS = 30  # how long to keep looking before calling the bound broken (the machine is shared)


def stored_use(env: dict[str, str], key_id: str) -> dict:
    """The key's row as the database holds it, read by another process (a request would count a use)."""
    code = (
        "import json; from keys.models import ApiKey; "
        f"key = ApiKey.objects.get(key_id={key_id!r}); "
        "print(json.dumps({'use_count': key.use_count, 'last_used_at': key.last_used_at is not None}))"
    )
    return json.loads(manage(env, "shell", "-v", "0", "-c", code).strip().splitlines()[-1])


def stored_hours(env: dict[str, str], key_id: str) -> dict[str, int]:
    """The key's hourly verification counts as the database holds them, by outcome."""
    code = (
        "import json; from keys.models import VerificationHour; "
        f"rows = VerificationHour.objects.filter(key_id={key_id!r}); "
        "print(json.dumps({row.outcome: row.count for row in rows}))"
    )
    return json.loads(manage(env, "shell", "-v", "0", "-c", code).strip().splitlines()[-1])


def test_a_single_use_is_written_within_the_bound_with_no_further_traffic(tmp_path):
    with service_database(tmp_path) as (database_url, keys):
        env = base_env(
            database_url, CHITTYAUTH_VAR_DIR=str(tmp_path), API_KEY_USAGE_WRITE_SECONDS=str(BOUND_SECONDS)
        )
        alice = keys[ALICE]
        with daphne_server(env, tmp_path) as server:
            status, _ = rest(server, "GET", "/api/v1/whoami", alice["key"])
            assert status == 200
            deadline = time.monotonic() + WAIT_FOR_SECONDS
            while (use := stored_use(env, alice["key_id"]))["use_count"] == 0:
                assert time.monotonic() < deadline, "the use was never written while the server ran"
                time.sleep(0.5)
            assert use == {"use_count": 1, "last_used_at": True}
            while not (hours := stored_hours(env, alice["key_id"])):
                assert time.monotonic() < deadline, "the hourly verification count was never written"
                time.sleep(0.5)
            assert hours == {"VALID": 1}
            assert server.process.poll() is None


def test_a_clean_stop_writes_the_uses_still_pending(tmp_path):
    with service_database(tmp_path) as (database_url, keys):
        env = base_env(database_url, CHITTYAUTH_VAR_DIR=str(tmp_path), API_KEY_USAGE_WRITE_SECONDS="3600")
        alice = keys[ALICE]
        with daphne_server(env, tmp_path) as server:
            for _ in range(3):
                assert rest(server, "GET", "/api/v1/whoami", alice["key"])[0] == 200
            assert stored_use(env, alice["key_id"])["use_count"] == 0  # still pending: an hour to go
            assert server.stop() == 0, server.output()

        assert stored_use(env, alice["key_id"]) == {"use_count": 3, "last_used_at": True}
        assert stored_hours(env, alice["key_id"]) == {"VALID": 3}
