"""The security epoch crosses process boundaries: a bump in another process is seen here."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from kernel.memory_only import NeedsIO, answering_from_memory
from kernel.security_epoch import _epoch_source, bump_now, current_epoch

ROOT = Path(__file__).resolve().parent.parent


def bump_in_another_process() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chittyauth_site.settings",
        "CHITTYAUTH_VAR_DIR": str(settings.VAR_DIR),
    }
    code = "import django; django.setup(); from kernel.security_epoch import bump_now; bump_now()"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def wait_for_change(before: int, seconds: float = 2.0) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = current_epoch()
        if now != before and now >= 0:
            return now
        time.sleep(0.01)
    return current_epoch()


def settled_epoch(seconds: float = 5.0) -> int:
    """The Redis feed needs a moment to subscribe; until then every call is a never-seen (negative) epoch."""
    deadline = time.monotonic() + seconds
    while (epoch := current_epoch()) < 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    return epoch


def test_a_bump_here_changes_the_epoch_at_once():
    before = settled_epoch()
    assert current_epoch() == before
    bump_now()
    assert current_epoch() != before


def test_a_bump_in_another_process_is_seen_here():
    before = settled_epoch()
    assert before >= 0, "the epoch source never settled"
    bump_in_another_process()
    assert wait_for_change(before) != before


@pytest.mark.redis
def test_a_bump_here_is_not_counted_again_when_it_comes_back_over_redis():
    """Caches filled after a local bump stay valid: the process's own message does not move the epoch."""
    before = settled_epoch()
    assert before >= 0, "the epoch source never settled"
    bump_now()
    bumped = current_epoch()
    assert bumped == before + 1
    time.sleep(0.5)  # the message has long come back on loopback
    assert current_epoch() == bumped
    bump_in_another_process()
    assert wait_for_change(bumped) == bumped + 1


@pytest.mark.redis
def test_without_the_feed_every_call_is_a_fresh_epoch(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    first, second = current_epoch(), current_epoch()
    assert first < 0 and second < 0 and first != second


@pytest.mark.redis
def test_a_publish_still_owed_is_io_and_never_done_while_answering_from_memory():
    """After a failed publish the next epoch read retries it over the network: not on an event loop."""
    assert settled_epoch() >= 0
    feed = _epoch_source()
    feed.pending_publish.set()  # as a publish that failed would leave it
    with pytest.raises(NeedsIO), answering_from_memory():
        current_epoch()
    assert feed.pending_publish.is_set()
    current_epoch()
    assert not feed.pending_publish.is_set()
