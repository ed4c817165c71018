"""Targeted invalidation: a change drops what depends on it, here at once and in other processes when its
message arrives; a lost, garbled or rotated message, or a feed outage, never leaves an entry trusted."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from kernel import invalidation
from kernel.invalidation import (
    SEQUENCE_KEY,
    current_stamp,
    invalidate_now,
    is_fresh,
    key_topic,
    principal_topic,
)
from kernel.memory_only import NeedsIO, answering_from_memory
from kernel.models import PendingInvalidation
from tests.mcp_live import suite_database_url

ROOT = Path(__file__).resolve().parent.parent
ELSEWHERE = key_topic("key_changed_elsewhere")
UNRELATED = principal_topic("CHITTY-PEO-UNRELATED-1")


def invalidate_in_another_process(topic: str) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chittyauth_site.settings",
        "CHITTYAUTH_VAR_DIR": str(settings.VAR_DIR),
    }
    code = f"import django; django.setup(); from kernel.invalidation import invalidate_now; invalidate_now({topic!r})"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


def settled_stamp(seconds: float = 10.0) -> int:
    """The stamp once the feed is live and quiet: the Redis feed needs a moment to subscribe (until then the
    stamp is None), and the test's own set-up (a cache flush empties the Redis database, sequence included)
    may still be arriving."""
    stamp, still_since, deadline = current_stamp(), time.monotonic(), time.monotonic() + seconds
    while stamp is None or time.monotonic() - still_since < 0.3:
        assert time.monotonic() < deadline, "the invalidation feed never settled"
        time.sleep(0.02)
        if current_stamp() != stamp:
            stamp, still_since = current_stamp(), time.monotonic()
    return stamp


def wait_until_stale(stamp: int, topics: tuple[str, ...], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not is_fresh(stamp, topics):
            return True
        time.sleep(0.01)
    return False


def test_a_change_here_is_seen_at_once_and_drops_only_what_depends_on_it():
    stamp = settled_stamp()
    invalidate_now(key_topic("revoked_here"))
    assert not is_fresh(stamp, (key_topic("revoked_here"),))
    assert not is_fresh(stamp, (UNRELATED, key_topic("revoked_here")))  # any of an entry's topics
    assert is_fresh(stamp, (UNRELATED, key_topic("still_live")))
    assert is_fresh(current_stamp(), (key_topic("revoked_here"),))  # filled after the change: fresh


def test_a_change_in_another_process_is_seen_here_and_nothing_else_is_dropped():
    stamp = settled_stamp()
    invalidate_in_another_process(ELSEWHERE)
    assert wait_until_stale(stamp, (ELSEWHERE,)), "the other process's change never arrived"
    assert is_fresh(stamp, (UNRELATED,))


def test_nothing_is_trusted_without_a_stamp():
    assert not is_fresh(None, ())


def test_the_ledger_flushes_whole_rather_than_grow_without_bound(monkeypatch):
    stamp = settled_stamp()
    monkeypatch.setattr(invalidation, "MAX_TRACKED_TOPICS", 3)
    invalidate_now(key_topic("a"), key_topic("b"))
    assert is_fresh(stamp, (UNRELATED,))
    invalidate_now(key_topic("c"), key_topic("d"))
    assert not is_fresh(stamp, (UNRELATED,))


# --- the embedded log ---------------------------------------------------------------------------------------


def log_path() -> Path:
    return Path(settings.VAR_DIR) / "invalidations.log"


@pytest.mark.skipif(bool(settings.REDIS_URL), reason="the embedded log is the feed without Redis")
def test_a_garbled_log_line_flushes_everything():
    stamp = settled_stamp()
    with open(log_path(), "ab") as log:
        log.write(b"not a change\n")
    assert not is_fresh(stamp, (UNRELATED,))


@pytest.mark.skipif(bool(settings.REDIS_URL), reason="the embedded log is the feed without Redis")
def test_a_rotated_log_flushes_everything(monkeypatch):
    stamp = settled_stamp()
    monkeypatch.setattr(invalidation, "MAX_LOG_BYTES", 1)
    invalidate_now(ELSEWHERE)  # the append passes the bound: the log is rotated
    assert Path(f"{log_path()}.old").exists()
    settled_stamp()  # a new log, read from its start
    assert not is_fresh(stamp, (UNRELATED,))


@pytest.mark.skipif(bool(settings.REDIS_URL), reason="the embedded log is the feed without Redis")
def test_a_partly_written_line_waits_for_its_end():
    stamp = settled_stamp()
    with open(log_path(), "ab") as log:
        log.write(b'["another-process", ["key:half')
        log.flush()
        assert is_fresh(stamp, (key_topic("half_written"),))
        log.write(b'_written"]]\n')
    assert not is_fresh(stamp, (key_topic("half_written"),))
    assert is_fresh(stamp, (UNRELATED,))


# --- the Redis feed -----------------------------------------------------------------------------------------


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@pytest.mark.redis
def test_a_change_made_here_is_not_applied_again_when_it_comes_back_over_redis():
    """Entries filled after a local change stay fresh: the process's own message drops nothing more."""
    settled_stamp()
    invalidate_now(ELSEWHERE)
    after = current_stamp()
    time.sleep(0.5)  # the message has long come back on loopback
    assert is_fresh(after, (ELSEWHERE,))
    assert current_stamp() == after


@pytest.mark.redis
def test_without_the_feed_nothing_is_trusted(settings):
    stamp = settled_stamp()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    assert current_stamp() is None
    assert not is_fresh(stamp, (UNRELATED,))


@pytest.mark.redis
def test_a_publish_still_owed_is_io_and_never_done_while_answering_from_memory():
    """After a failed publish the next stamp read retries it over the network: not on an event loop."""
    settled_stamp()
    feed = invalidation._current_feed()
    feed._owed.append([ELSEWHERE])  # as a publish that failed would leave it
    with pytest.raises(NeedsIO), answering_from_memory():
        current_stamp()
    assert feed._owed
    current_stamp()
    assert not feed._owed


@pytest.mark.redis
def test_a_lost_message_flushes_everything_when_the_next_one_arrives():
    stamp = settled_stamp()
    redis_client().incr(SEQUENCE_KEY)  # a message that never came: the next one shows the gap
    invalidate_in_another_process(ELSEWHERE)
    assert wait_until_stale(stamp, (UNRELATED,)), "the gap in the sequence went unnoticed"


@pytest.mark.redis
def test_a_lost_last_message_flushes_everything_within_a_heartbeat():
    stamp = settled_stamp()
    redis_client().incr(SEQUENCE_KEY)  # the last message lost, and nothing after it
    assert wait_until_stale(stamp, (UNRELATED,), seconds=invalidation.HEARTBEAT_SECONDS * 4)


@pytest.mark.redis
def test_a_flushed_redis_flushes_everything():
    """A restarted (empty) Redis starts the sequence again: whatever it lost is unknown."""
    stamp = settled_stamp()
    redis_client().delete(SEQUENCE_KEY)
    invalidate_in_another_process(ELSEWHERE)
    assert wait_until_stale(stamp, (UNRELATED,))


@pytest.mark.redis
def test_subscribing_while_others_publish_flushes_once_and_no_more():
    """A message published between a new subscription and its sequence read arrives after that read; it is
    covered by the subscription's own flush and must not flush a second time (that cooled every cache on a
    node starting, or resubscribing, beside busy ones)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chittyauth_site.settings"}
    publisher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import django; django.setup()\n"
            "from kernel.invalidation import invalidate_now, key_topic\n"
            "while True: invalidate_now(key_topic('busy'))",
        ],
        cwd=ROOT,
        env=env,
    )
    subscribers = (
        "import django, logging, time; django.setup()\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from kernel import invalidation\n"
        "for _ in range(20):\n"
        "    feed = invalidation._RedisFeed(invalidation.settings.REDIS_URL)\n"
        "    assert feed.live.wait(10), 'never subscribed'\n"
        "    time.sleep(0.05)\n"
        "    print('subscribed', flush=True)\n"
    )
    try:
        time.sleep(0.5)  # the publisher is under way
        subscribed = subprocess.run(
            [sys.executable, "-c", subscribers], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        publisher.kill()
        publisher.wait()
    assert subscribed.returncode == 0, subscribed.stderr
    assert subscribed.stdout.count("subscribed") == 20
    assert "flushing every cache" not in subscribed.stderr, subscribed.stderr


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_committed_change_its_process_could_not_publish_is_relayed_by_another():
    """A node cut off from Redis still commits changes; another process publishes them from the database, so
    no node keeps trusting what changed (seen across namespaces: every other node kept accepting a revoked key
    for the whole partition)."""
    stamp = settled_stamp()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chittyauth_site.settings",
        "DATABASE_URL": suite_database_url(),
        "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there: the publish after the commit fails
    }
    code = (
        "import django; django.setup(); from django.db import transaction; "
        f"from kernel.invalidation import invalidate\nwith transaction.atomic(): invalidate({ELSEWHERE!r})"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    assert PendingInvalidation.objects.filter(topics=[ELSEWHERE]).exists()
    bound = invalidation.RELAY_AFTER_SECONDS + invalidation.HEARTBEAT_SECONDS * 3
    assert wait_until_stale(stamp, (ELSEWHERE,), seconds=bound), "the unpublished change was never relayed"
    assert is_fresh(stamp, (UNRELATED,)), "a relayed change dropped more than it names"
    deadline = time.monotonic() + bound  # the relay deletes the row just after publishing it
    while PendingInvalidation.objects.filter(topics=[ELSEWHERE]).exists():
        assert time.monotonic() < deadline, "the relayed change was never crossed off"
        time.sleep(0.05)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_backlog_of_unpublished_changes_is_relayed_as_one_flush():
    """Changes piled up while no process reached Redis: relayed a batch a second, a change made meanwhile would
    wait behind them all."""
    stamp = settled_stamp()
    PendingInvalidation.objects.bulk_create(
        PendingInvalidation(topics=[key_topic(f"key_backlog_{n}")])
        for n in range(invalidation.RELAY_BATCH + 1)
    )
    bound = invalidation.RELAY_AFTER_SECONDS + invalidation.HEARTBEAT_SECONDS * 3
    assert wait_until_stale(stamp, (UNRELATED,), seconds=bound), "the backlog did not flush everything"
    deadline = time.monotonic() + bound
    while PendingInvalidation.objects.exists():
        assert time.monotonic() < deadline, "the backlog was not crossed off"
        time.sleep(0.05)
