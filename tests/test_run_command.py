"""The README's run command: `./dev run` serves a ready service and stops cleanly, children and all."""

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_WITHIN_SECONDS = 90
EXIT_WITHIN_SECONDS = 15


def processes_in_session(session_id: int) -> list[str]:
    """Live (non-zombie) processes of the session `./dev run` leads, as "pid command" lines."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
        except OSError:
            continue
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == session_id and state != "Z":
            found.append(f"{stat_file.parent.name} {command}")
    return found


def wait_until_ready(url: str, process: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"./dev run exited early with {process.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a loopback URL we built
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError(f"/readyz did not answer 200 within {READY_WITHIN_SECONDS}s:\n{log.read_text()}")


def test_dev_run_serves_until_sigterm_then_exits_cleanly_with_its_children(tmp_path):
    port = free_port()
    log = tmp_path / "dev-run.log"
    inherited = {"DATABASE_URL", "REDIS_URL", "CHITTYID_ENDPOINT", "ENVIRONMENT", "DEBUG", "HOST", "PORT"}
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    # Blank counts as unset: the metrics go to var/metrics, where only prometheus-client's files are emptied.
    env.update(PORT=str(port), CHITTYAUTH_VAR_DIR=str(tmp_path), PROMETHEUS_MULTIPROC_DIR="")
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_1.db").write_bytes(b"a stopped process's counts")
    (metrics / "someone-elses.db").write_bytes(b"not ours to delete")

    with log.open("w") as output:
        process = subprocess.Popen(
            [str(REPO_ROOT / "dev"), "run"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        readiness = wait_until_ready(f"http://127.0.0.1:{port}/readyz", process, log)
        assert readiness["status"] == "ok"
        assert (tmp_path / "chittyauth.sqlite3").exists()
        assert not (metrics / "counter_1.db").exists()
        assert (metrics / "someone-elses.db").exists()
        children = processes_in_session(process.pid)
        assert any("daphne" in line for line in children), children
        assert any("celery" in line for line in children), children

        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=EXIT_WITHIN_SECONDS)

        assert exit_code == 0, log.read_text()
        assert processes_in_session(process.pid) == [], log.read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=EXIT_WITHIN_SECONDS)
