"""One shared epoch that every security-relevant change bumps (revocations, grants, identity status).

Hot paths (key and token validation, permission checks) keep per-process caches tagged with the epoch they
were filled under, and compare it with `current_epoch()` on every call, so that call must cost next to nothing:

- With `REDIS_URL` (production, many processes and nodes), each process subscribes to a Redis channel and
  counts the bumps pushed to it: reading the epoch is a memory read. A bump made in this process counts at
  once (and not again when its own message comes back); other processes see it when the message arrives
  (well under a millisecond on a healthy network).
  While a process's subscription is down it cannot know, so every call gets a never-seen epoch and the hot
  paths answer from the database: slower, never stale. A (re)subscription invalidates everything.
- Without Redis (the embedded default: one machine, a daphne and a Celery worker), the epoch is the size and
  identity of a small file under the var directory that every bump appends a byte to: one `stat` per call.
"""

import logging
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import redis
from django.conf import settings
from django.db import transaction

from kernel.memory_only import fixed_for_this_answer, needs_io

logger = logging.getLogger(__name__)

EPOCH_CHANNEL = "chittyauth:security-epoch"
RESUBSCRIBE_DELAY_SECONDS = 0.5


def _unseen_epoch() -> int:
    return -time.time_ns()


class _RedisEpochFeed:
    """This process's count of the bumps Redis has pushed to it, kept current by a daemon thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pid = os.getpid()
        self.count = 0
        self._count_lock = threading.Lock()
        self.live = threading.Event()
        self.pending_publish = threading.Event()
        # What this process publishes: it has counted its own bumps already, so it skips them coming back.
        self.signature = f"{socket.gethostname()}:{self.pid}:{secrets.token_hex(8)}".encode()
        self._client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        threading.Thread(target=self._follow, name="security-epoch-feed", daemon=True).start()

    def epoch(self) -> int:
        if not self.live.is_set():
            return _unseen_epoch()
        if self.pending_publish.is_set():
            needs_io("security epoch publish")
            self.publish()
        return self.count

    def advance(self) -> None:
        with self._count_lock:
            self.count += 1

    def publish(self) -> None:
        try:
            self._client.publish(EPOCH_CHANNEL, self.signature)
        except redis.RedisError:
            logger.warning("Could not publish a security epoch bump; will retry when Redis answers")
            self.pending_publish.set()
        else:
            self.pending_publish.clear()

    def _follow(self) -> None:
        while True:
            try:
                subscriber = redis.Redis.from_url(
                    self.url, socket_connect_timeout=2, socket_keepalive=True, health_check_interval=10
                )
                pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(EPOCH_CHANNEL)
                pubsub.get_message(timeout=2)  # the subscribe confirmation: from here on nothing is missed
                self.advance()  # whatever happened while we were not listening is now stale
                self.live.set()
                for message in pubsub.listen():
                    if message.get("type") == "message" and message.get("data") != self.signature:
                        self.advance()
            except Exception:  # Redis is down or the connection dropped: serve from the database  # noqa: BLE001
                if self.live.is_set():
                    logger.warning(
                        "Security epoch feed lost; serving every check from the database until it is back"
                    )
                self.live.clear()
                time.sleep(RESUBSCRIBE_DELAY_SECONDS)


class _FileEpoch:
    """The embedded default's epoch: processes on one machine share a file that each bump appends to."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)  # a str: `os.stat` of a Path converts it on every call

    def epoch(self) -> int:
        try:
            stat = os.stat(self.path)
        except OSError:
            return _unseen_epoch()
        return (
            hash((stat.st_ino, stat.st_size, stat.st_mtime_ns)) & 0x7FFF_FFFF_FFFF_FFFF
        )  # never-seen ones are < 0

    def bump(self) -> None:
        try:
            with open(self.path, "ab") as epoch_file:
                epoch_file.write(b".")
        except OSError:
            logger.exception("Could not bump the security epoch file %s", self.path)


_feed_lock = threading.Lock()
_feed: _RedisEpochFeed | _FileEpoch | None = None


def _epoch_source() -> _RedisEpochFeed | _FileEpoch:
    global _feed
    feed = _feed
    if _is_current(feed):
        return feed
    with _feed_lock:
        if not _is_current(_feed):
            if settings.REDIS_URL:
                _feed = _RedisEpochFeed(settings.REDIS_URL)
            else:
                Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
                _feed = _FileEpoch(Path(settings.VAR_DIR) / "security-epoch")
        return _feed


def _is_current(feed: _RedisEpochFeed | _FileEpoch | None) -> bool:
    """Made in this process (a forked worker needs its own thread) for the configured backend."""
    if isinstance(feed, _RedisEpochFeed):
        return feed.pid == os.getpid() and feed.url == settings.REDIS_URL
    return isinstance(feed, _FileEpoch) and not settings.REDIS_URL


def current_epoch() -> int:
    """Read once per memory answer: its checks (connection, key, grants) then judge by the same epoch."""
    return fixed_for_this_answer("security epoch", _read_epoch)


def _read_epoch() -> int:
    return _epoch_source().epoch()


def bump_now() -> None:
    """Bump outside any transaction (and as part of `bump_epoch`)."""
    source = _epoch_source()
    if isinstance(source, _RedisEpochFeed):
        source.advance()
        source.publish()
    else:
        source.bump()


def bump_epoch() -> None:
    """Call inside the transaction that changes security state; it bumps now and again after the commit,
    so no process can cache the state from before the commit under the new epoch."""
    bump_now()
    transaction.on_commit(bump_now)
