"""PostgreSQL's network bounds (README, `DB_NETWORK_TIMEOUT_SECONDS`): the server is told to probe a silent
client and drop it, so a partitioned node's transaction does not hold its locks for hours. What that does with a
real partition is tested across network namespaces (tests/test_faults_across_hosts.py)."""

import json
import os
import subprocess
import sys

import pytest

from tests.mcp_live import REPO_ROOT, suite_database_url

pytestmark = pytest.mark.postgres

SERVER_SETTINGS = (
    "tcp_keepalives_idle",
    "tcp_keepalives_interval",
    "tcp_keepalives_count",
    "tcp_user_timeout",
    "client_connection_check_interval",
)
SHOW = f"""
import json, django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    answers = {{}}
    for name in {SERVER_SETTINGS!r}:
        cursor.execute(f"SHOW {{name}}")
        answers[name] = cursor.fetchone()[0]
print(json.dumps(answers))
"""


def server_settings(database_url: str, **env: str) -> dict[str, str]:
    """What the server applies to a connection the service opens."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chittyauth_site.settings",
        "DATABASE_URL": database_url,
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", SHOW],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_server_drops_a_silent_client_within_the_network_timeout():
    assert server_settings(suite_database_url(), DB_NETWORK_TIMEOUT_SECONDS="7") == {
        "tcp_keepalives_idle": "7",
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "7000",  # milliseconds
        "client_connection_check_interval": "1s",
    }


def test_options_in_the_database_url_win():
    url = suite_database_url() + "?options=-c%20tcp_keepalives_idle%3D60"
    assert server_settings(url)["tcp_keepalives_idle"] == "60"


def test_they_can_be_left_to_the_server_for_a_pooler_that_refuses_startup_options():
    applied = server_settings(
        suite_database_url(), DB_SERVER_SIDE_TIMEOUTS="false", DB_NETWORK_TIMEOUT_SECONDS="7"
    )
    assert applied["tcp_keepalives_idle"] != "7"
    assert applied["client_connection_check_interval"] != "1s"
