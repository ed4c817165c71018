"""SIGTERM with Django requests in flight: they finish and are answered, then daphne exits (it used to hang
with their worker threads waiting on a stopped event loop)."""

import signal
import time
from concurrent.futures import ThreadPoolExecutor

from tests.mcp_live import ADMIN, SLOW, authority_env, cast_authority, daphne_server, rest, service_database

SLOW_AUTHORITY_SECONDS = 2.0
IN_FLIGHT = 3
EXIT_WITHIN_SECONDS = 20  # the drain waits at most 10 s


def test_requests_in_flight_at_sigterm_are_answered_and_daphne_exits(tmp_path):
    with (
        cast_authority(SLOW_AUTHORITY_SECONDS) as authority,
        service_database(tmp_path) as (database_url, keys),
    ):
        env = authority_env(database_url, authority)
        with daphne_server(env, tmp_path) as server, ThreadPoolExecutor(IN_FLIGHT) as pool:
            # Each new key's ChittyID is checked with the authority, which takes its time over SLOW.
            answers = [
                pool.submit(
                    rest,
                    server,
                    "POST",
                    "/api/v1/keys",
                    keys[ADMIN]["key"],
                    {"chitty_id": SLOW, "name": f"{n}"},
                )
                for n in range(IN_FLIGHT)
            ]
            deadline = time.monotonic() + 30
            while len(authority.requests_for(SLOW)) < IN_FLIGHT and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(authority.requests_for(SLOW)) == IN_FLIGHT, server.output()  # all of them in flight
            server.process.send_signal(signal.SIGTERM)
            exit_code = server.process.wait(EXIT_WITHIN_SECONDS)
            statuses = [answer.result(timeout=30)[0] for answer in answers]
    assert exit_code == 0, server.output()
    assert statuses == [201] * IN_FLIGHT, server.output()
