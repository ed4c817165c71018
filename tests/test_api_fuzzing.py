"""Schemathesis against the live schema of a live daphne: every operation, examples, coverage, fuzzing and
stateful phases, every check but one, on a fixed seed and example budget (FUZZ_MAX_EXAMPLES, 25 by default;
raise it for a longer run on demand).

Left out: `positive_data_acceptance` (a request the schema allows must succeed). The schema describes shapes;
the service also refuses on rules a shape cannot carry (a ChittyID that is not upper case or is unknown, a
null character, escalation, a key that is already revoked), and answers those with a documented 400/403/404/
409. Every other check holds: no 5xx, documented status codes and content types only, bodies and headers as
documented, schema-violating input refused, authentication not ignored."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.mcp_live import ADMIN, REPO_ROOT, base_env, daphne_server, service_database

SCHEMATHESIS = str(Path(os.sys.executable).parent / "schemathesis")
SEED = "20261207"
MAX_EXAMPLES = os.environ.get("FUZZ_MAX_EXAMPLES", "25")
RUN_WITHIN_SECONDS = 600


def schemathesis_run(schema_url: str, folder: Path, env: dict[str, str], *arguments: str) -> str:
    """One `schemathesis run`; on failure, its report names each finding with a curl line to reproduce it."""
    command = [
        SCHEMATHESIS,
        "run",
        schema_url,
        "--seed",
        SEED,
        "--max-examples",
        MAX_EXAMPLES,
        "--workers",
        "1",
        "--checks",
        "all",
        *arguments,
    ]
    result = subprocess.run(
        command,
        cwd=folder,
        env={**env, "NO_COLOR": "1", "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=RUN_WITHIN_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, (
        f"schemathesis found problems:\n{result.stdout[-20000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.fixture
def live_node(tmp_path):
    """A deployed-like node (ENVIRONMENT=test: DEBUG off, as in production) on a seeded database copy."""
    with service_database(tmp_path) as (database_url, _keys):
        env = base_env(database_url, ENVIRONMENT="test")
        with daphne_server(env, tmp_path) as server:
            yield server, env


def test_every_operation_answers_as_its_schema_says_to_an_administrator(live_node, tmp_path):
    server, env = live_node
    hooks = {**env, "SCHEMATHESIS_HOOKS": "tests.fuzz_auth", "FUZZ_CHITTY_ID": ADMIN}
    report = schemathesis_run(
        f"{server.url}/api/schema/", tmp_path, hooks, "--exclude-checks", "positive_data_acceptance"
    )
    assert "Authentication failed" not in report, report  # the fuzzer's key worked on every operation
    assert "Traceback" not in server.output()


def test_every_operation_refuses_an_anonymous_caller_as_documented(live_node, tmp_path):
    server, env = live_node
    schemathesis_run(
        f"{server.url}/api/schema/",
        tmp_path,
        env,
        "--phases",
        "examples,coverage",
        "--exclude-checks",
        "positive_data_acceptance,ignored_auth",
    )
    assert "Traceback" not in server.output()
