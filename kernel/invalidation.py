"""Targeted invalidation of the per-process caches on the hot paths (keys, tokens, grants, sessions).

Every security change names the *topics* it affects (`key:<key_id>`, `token:<jti>`, `session:<id>`,
`principal:<chitty_id>`, `signing-key:<kid>`, and the sets `signing-keys` and `revoked-tokens`). Each process keeps a ledger: a generation
counter, the generation at which each topic last changed, and a floor below which everything is stale. A cache
entry remembers the generation it was filled under (its *stamp*, read before its database read) and the topics
it depends on; it is fresh while none of them changed after its stamp. A change therefore drops only what
depends on it, here at once and elsewhere when its message arrives:

- With `REDIS_URL` (production, many processes and nodes), a change is published on a Redis channel together
  with a sequence number taken in the same atomic script. A follower thread applies other processes' changes;
  a gap or a step back in the sequence (a lost, reordered or flushed message) and a sequence that has moved
  without a message within a heartbeat both flush this process's ledger whole. While the subscription is down
  the process cannot know, so `current_stamp()` is None and every hot path answers from the database; a
  (re)subscription flushes everything.
- Without Redis (the embedded default: one machine, a daphne and a Celery worker), changes are appended as
  lines to a log file under the var directory that every process reads from its last offset (one `stat` per
  answer while nothing changed). A rotated or truncated log, or a line that does not parse, flushes.

A change is applied inside its transaction and again after the commit, so no process can cache the state from
before the commit under a stamp the change does not reach.
"""

import contextlib
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import DateTimeField, ExpressionWrapper, Value
from django.db.models.functions import Now

from kernel.errors import DATABASE_DOWN
from kernel.memory_only import fixed_for_this_answer, needs_io
from kernel.models import PendingInvalidation

logger = logging.getLogger(__name__)

# Per Redis database: pub/sub channels are shared by every database of a server, sequences are not.
CHANNEL = "chittyauth:invalidations:{db}"
SEQUENCE_KEY = "chittyauth:invalidations:sequence"
EVERYTHING = "*"
HEARTBEAT_SECONDS = 1.0
REDIS_TIMEOUT_SECONDS = 2.0  # connecting to Redis, and each command but the subscription's reads
# How long a node cut off from Redis without its connection dropping may still answer from memory: one wait
# for a message, then a heartbeat that times out.
SILENT_PARTITION_BOUND_SECONDS = HEARTBEAT_SECONDS + REDIS_TIMEOUT_SECONDS
HEARTBEAT_PING = "chittyauth-invalidation-heartbeat"
RESUBSCRIBE_DELAY_SECONDS = 0.5
MAX_TRACKED_TOPICS = 100_000  # past this many changed topics the ledger flushes whole and starts again
MAX_TOPICS_PER_MESSAGE = 1_000  # a bigger change is announced as "everything"
# A committed change its own process has not published (it could not reach Redis) is published by any other
# process once it is this old, checked every heartbeat; so it reaches every node within about two heartbeats.
RELAY_AFTER_SECONDS = 1.0
RELAY_BATCH = 100  # more than this pending at once is a backlog, relayed as one "flush everything"
RELAY_BACKLOG_AT_ONCE = 10_000
RELAY_WARNING_EVERY_SECONDS = 60.0
RELAYED = "relayed"  # the signature of a relayed message: every process applies it, its maker's too
MAX_LOG_BYTES = 4 * 1024 * 1024

# One atomic step: messages leave Redis in sequence order, so a follower can tell a missing one.
_PUBLISH_SCRIPT = """
local sequence = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', KEYS[2], sequence .. ' ' .. ARGV[1])
return sequence
"""


def key_topic(key_id: str) -> str:
    return f"key:{key_id}"


def token_topic(jti: str) -> str:
    return f"token:{jti}"


def session_topic(session_id: str) -> str:
    return f"session:{session_id}"


def principal_topic(chitty_id: str) -> str:
    """A principal's status, grants and registration: everything judged about it rather than a credential."""
    return f"principal:{chitty_id}"


def signing_key_topic(kid: str) -> str:
    return f"signing-key:{kid}"


SIGNING_KEYS = "signing-keys"  # the set of published keys itself
REVOKED_TOKENS = "revoked-tokens"  # the set of revoked jtis itself


def credential_topic(credential_type: str, credential_id: str) -> str:
    return token_topic(credential_id) if credential_type == "jwt" else key_topic(credential_id)


class _Ledger:
    """This process's record of what changed when. Read without a lock (single dict reads); written under one."""

    def __init__(self) -> None:
        self.generation = 1
        self.floor = 1
        self.changed: dict[str, int] = {}
        self._lock = threading.Lock()

    def changes(self, topics: Iterable[str]) -> None:
        with self._lock:
            self.generation += 1
            topics = list(topics)
            if EVERYTHING in topics or len(self.changed) + len(topics) > MAX_TRACKED_TOPICS:
                self.floor = self.generation
                self.changed = {}
                return
            for topic in topics:
                self.changed[topic] = self.generation

    def flush(self) -> None:
        self.changes([EVERYTHING])

    def is_fresh(self, stamp: int, topics: Iterable[str]) -> bool:
        if stamp < self.floor:
            return False
        changed = self.changed
        return all(changed.get(topic, 0) <= stamp for topic in topics)


_ledger = _Ledger()


def _signature() -> str:
    """What this process's own messages carry, so it does not apply them a second time."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"


def _parsed(payload: bytes) -> tuple[str, list[str]] | None:
    """A change as both feeds carry it, `[signature, [topic, ...]]`, or None when it does not parse."""
    try:
        signature, topics = json.loads(payload)
        return str(signature), [str(topic) for topic in topics]
    except (ValueError, TypeError):
        return None


class _RedisFeed:
    """Publishes this process's changes and follows everyone else's, with gap detection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pid = os.getpid()
        self.signature = _signature()
        self.live = threading.Event()
        self.last_sequence = 0
        self.progress = 0  # subscriptions made and messages applied: a waiter can tell the follower moved on
        self._owed: list[list[str]] = []  # changes whose publish failed, retried on the next stamp
        self._owed_lock = threading.Lock()
        self._client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
        self.channel = CHANNEL.format(db=self._client.connection_pool.connection_kwargs.get("db", 0))
        self._publish_script = self._client.register_script(_PUBLISH_SCRIPT)
        threading.Thread(target=self._follow, name="invalidation-feed", daemon=True).start()
        threading.Thread(target=self._relay, name="invalidation-relay", daemon=True).start()

    def stamp(self) -> int | None:
        if not self.live.is_set():
            return None
        if self._owed:
            needs_io("invalidation publish")
            self._publish_owed()
        return _ledger.generation

    def publish(self, topics: list[str]) -> bool:
        """Publish (with whatever is still owed); False if Redis did not take it, and it is owed."""
        with self._owed_lock:
            self._owed.append(topics)
        return self._publish_owed()

    def publish_committed(self, pending_id: int, topics: list[str]) -> None:
        """After the commit: once published, the change no longer needs relaying."""
        _ledger.changes(topics)
        if self.publish(topics):
            try:
                PendingInvalidation.objects.filter(pk=pending_id).delete()
            except DATABASE_DOWN:
                logger.warning(
                    "Could not delete a published invalidation; another process will publish it again"
                )

    def relay_pending(self) -> int:
        """Publish the committed changes their own process has not (it could not reach Redis); how many."""
        old = ExpressionWrapper(
            Now() - Value(timedelta(seconds=RELAY_AFTER_SECONDS)), output_field=DateTimeField()
        )
        pending = list(
            PendingInvalidation.objects.filter(created_at__lt=old)
            .order_by("pk")
            .values_list("pk", "topics")[:RELAY_BACKLOG_AT_ONCE]
        )
        # A backlog (Redis was down for every process) is flushed whole at once rather than drained a batch a
        # second, which would leave a change made meanwhile waiting behind it.
        messages = [[EVERYTHING]] if len(pending) > RELAY_BATCH else [topics for _, topics in pending]
        for topics in messages:
            self._send(RELAYED, topics)
        PendingInvalidation.objects.filter(pk__in=[pk for pk, _ in pending]).delete()
        if pending:
            logger.warning("Relayed %d invalidation(s) their own process could not publish", len(pending))
        return len(pending)

    def _relay(self) -> None:
        warned_at = -RELAY_WARNING_EVERY_SECONDS
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            try:
                if self.live.is_set():
                    self.relay_pending()
            except Exception as exc:  # noqa: BLE001 - unreachable database or Redis: the next round tries again
                if time.monotonic() - warned_at >= RELAY_WARNING_EVERY_SECONDS:
                    warned_at = time.monotonic()
                    # By type only: a driver's message may name hosts and users.
                    logger.warning("Could not relay pending invalidations (%s); retrying", type(exc).__name__)
            finally:
                with contextlib.suppress(Exception):
                    connection.close()

    def _send(self, signature: str, topics: list[str]) -> None:
        self._publish_script(keys=[SEQUENCE_KEY, self.channel], args=[json.dumps([signature, topics])])

    def _publish_owed(self) -> bool:
        with self._owed_lock:
            owed, self._owed = self._owed, []
            if len(owed) > 1 and sum(map(len, owed)) > MAX_TOPICS_PER_MESSAGE:
                owed = [[EVERYTHING]]
            try:
                while owed:
                    self._send(self.signature, owed[0])
                    owed.pop(0)
            except redis.RedisError:
                logger.warning("Could not publish an invalidation; will retry when Redis answers")
                self._owed = owed + self._owed
                return False
            return True

    def _follow(self) -> None:
        while True:
            try:
                subscriber = redis.Redis.from_url(
                    self.url,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_timeout=HEARTBEAT_SECONDS * 5,
                )
                pubsub = subscriber.pubsub()
                pubsub.subscribe(self.channel)
                while (
                    confirmation := pubsub.get_message(timeout=REDIS_TIMEOUT_SECONDS)
                ) is None or confirmation["type"] != "subscribe":
                    if confirmation is None:
                        raise redis.ConnectionError("no subscription confirmation")
                # From here on nothing is missed; whatever happened before is now stale.
                self.last_sequence = self._sequence_now()
                _ledger.flush()
                self.live.set()
                self.progress += 1
                self._settle(pubsub)
                while True:
                    message = pubsub.get_message(timeout=HEARTBEAT_SECONDS)
                    if message is None:
                        self._heartbeat(pubsub)
                    elif message["type"] == "message":
                        self._apply(message["data"])
                        self.progress += 1
            except Exception:  # Redis is down or the connection dropped: serve from the database  # noqa: BLE001
                if self.live.is_set():
                    logger.warning(
                        "Invalidation feed lost; serving every check from the database until it is back"
                    )
                self.live.clear()
                time.sleep(RESUBSCRIBE_DELAY_SECONDS)

    def _settle(self, pubsub: redis.client.PubSub) -> None:
        """Messages published between the subscription and the sequence read are covered by the flush, and
        would otherwise look like a replay and flush again. Every one of them was published before that read,
        so it is queued ahead of the answer to a PING sent after it. Their topics still apply: a Redis emptied
        meanwhile restarts the numbering, and the heartbeat then flushes for the mismatch."""
        covered_up_to = self.last_sequence
        pubsub.ping(HEARTBEAT_PING)
        while (message := pubsub.get_message(timeout=HEARTBEAT_SECONDS * 5)) is not None:
            if message["type"] == "pong" and message["data"] == HEARTBEAT_PING.encode():
                return
            if message["type"] == "message":
                self._apply(message["data"], covered_up_to)
                self.progress += 1
        raise redis.TimeoutError("the subscription did not answer its first heartbeat")

    def _sequence_now(self) -> int:
        return int(self._client.get(SEQUENCE_KEY) or 0)

    def _apply(self, data: bytes, covered_up_to: int = 0) -> None:
        sequence_text, _, payload = data.partition(b" ")
        parsed = _parsed(payload) if sequence_text.isdigit() else None
        if parsed is None:
            logger.warning("An invalidation message did not parse; flushing every cache")
            _ledger.flush()
            return
        sequence, (signature, topics) = int(sequence_text), parsed
        if sequence > covered_up_to:  # at or below: published before the subscription's flush
            if sequence != self.last_sequence + 1:  # a gap, a step back (Redis restarted) or a replay
                logger.warning(
                    "Invalidation sequence jumped from %d to %d; flushing every cache",
                    self.last_sequence,
                    sequence,
                )
                _ledger.flush()
            self.last_sequence = sequence
        if signature != self.signature:
            _ledger.changes(topics)

    def _heartbeat(self, pubsub: redis.client.PubSub) -> None:
        """No message for a while: a sequence that moved anyway means a message was lost (or Redis restarted).

        Every message numbered up to the sequence read here was published before that read, so it is queued on
        the subscription ahead of the answer to a PING sent after it: once that answer is in, what has not
        arrived was lost, with no guess at delivery time."""
        sequence = self._sequence_now()
        if sequence == self.last_sequence:
            return
        pubsub.ping(HEARTBEAT_PING)
        heard_any = False
        while (message := pubsub.get_message(timeout=HEARTBEAT_SECONDS * 5)) is not None:
            if message["type"] == "message":
                self._apply(message["data"])
                heard_any = True
            elif message["type"] == "pong" and message["data"] == HEARTBEAT_PING.encode():
                break
        else:
            raise redis.TimeoutError("the subscription did not answer its heartbeat")
        if self.last_sequence < sequence or (not heard_any and self.last_sequence != sequence):
            logger.warning("Invalidation sequence moved without its message; flushing every cache")
            _ledger.flush()
            self.last_sequence = sequence


class _LogFeed:
    """The embedded default: processes on one machine share an append-only log of changes."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)  # a str: `os.stat` of a Path converts it on every call
        self.lock_path = f"{self.path}.lock"
        self.signature = _signature()
        self._inode: int | None = None
        self._offset = 0
        self._read_lock = threading.Lock()

    def stamp(self) -> int | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            self._create()
            return None
        except OSError:
            return None
        if stat.st_ino != self._inode or stat.st_size != self._offset:
            self._catch_up()
        return _ledger.generation

    def _create(self) -> None:
        try:
            with open(self.path, "ab"):
                pass
        except OSError:
            logger.exception("Could not create the invalidation log %s", self.path)

    def _catch_up(self) -> None:
        with self._read_lock:
            try:
                with open(self.path, "rb") as log:
                    stat = os.fstat(log.fileno())
                    if stat.st_ino != self._inode or stat.st_size < self._offset:
                        # A new (rotated) or truncated log: what it held before is unknown.
                        _ledger.flush()
                        self._inode, self._offset = stat.st_ino, stat.st_size
                        return
                    log.seek(self._offset)
                    tail = log.read()
            except OSError:
                _ledger.flush()
                self._inode = None
                return
            complete = tail[: tail.rfind(b"\n") + 1]
            self._offset += len(complete)
            for line in complete.splitlines():
                self._apply(line)

    def _apply(self, line: bytes) -> None:
        parsed = _parsed(line)
        if parsed is None:
            logger.warning("An invalidation log line did not parse; flushing every cache")
            _ledger.flush()
            return
        signature, topics = parsed
        if signature != self.signature:
            _ledger.changes(topics)

    def publish(self, topics: list[str]) -> None:
        line = json.dumps([self.signature, topics]).encode() + b"\n"
        try:
            with open(self.lock_path, "ab") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one writer at a time, and none while the log rotates
                with open(self.path, "ab") as log:
                    log.write(line)
                    size = log.tell()
                if size > MAX_LOG_BYTES:
                    os.replace(self.path, f"{self.path}.old")
        except OSError:
            logger.exception("Could not append to the invalidation log %s", self.path)


_feed_lock = threading.Lock()
_feed: _RedisFeed | _LogFeed | None = None


def _current_feed() -> _RedisFeed | _LogFeed:
    global _feed
    feed = _feed
    if _is_current(feed):
        return feed
    with _feed_lock:
        if not _is_current(_feed):
            if settings.REDIS_URL:
                _feed = _RedisFeed(settings.REDIS_URL)
            else:
                Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
                _feed = _LogFeed(Path(settings.VAR_DIR) / "invalidations.log")
        return _feed


def _is_current(feed: _RedisFeed | _LogFeed | None) -> bool:
    """Made in this process (a forked worker needs its own thread) for the configured backend."""
    if isinstance(feed, _RedisFeed):
        return feed.pid == os.getpid() and feed.url == settings.REDIS_URL
    return isinstance(feed, _LogFeed) and not settings.REDIS_URL


def current_stamp() -> int | None:
    """The generation to stamp entries filled now (read it before the database read), or None when this
    process cannot hear changes: then nothing cached may be trusted. Read once per memory answer."""
    return fixed_for_this_answer("invalidation stamp", lambda: _current_feed().stamp())


def is_fresh(stamp: int | None, topics: Iterable[str]) -> bool:
    """May an entry filled under `stamp`, depending on `topics`, answer now?"""
    return stamp is not None and current_stamp() is not None and _ledger.is_fresh(stamp, topics)


def _announced(topics: tuple[str, ...]) -> list[str]:
    return [EVERYTHING] if len(topics) > MAX_TOPICS_PER_MESSAGE else list(topics)


def invalidate_now(*topics: str) -> None:
    """Drop what depends on `topics` here at once and everywhere else when the message arrives."""
    announced = _announced(topics)
    _ledger.changes(announced)
    _current_feed().publish(announced)


def invalidate(*topics: str) -> None:
    """Call inside the transaction that makes the change: it applies now and again after the commit. With
    Redis the change is also written down in the same transaction, for another process to publish should this
    one fail to."""
    invalidate_now(*topics)
    feed = _current_feed()
    if isinstance(feed, _RedisFeed):
        announced = _announced(topics)
        pending_id = PendingInvalidation.objects.create(topics=announced).pk
        # Robust: a failure here must not skip the other callbacks (closing ended sessions' sockets).
        transaction.on_commit(lambda: feed.publish_committed(pending_id, announced), robust=True)
    else:
        transaction.on_commit(lambda: invalidate_now(*topics))


def invalidate_everything_now() -> None:
    """Every cache everywhere starts again (tests, benchmarks, a change too wide to name)."""
    invalidate_now(EVERYTHING)


def invalidate_everything_and_wait(timeout: float) -> bool:
    """`invalidate_everything_now()`, returning once this process has heard that announcement (or False after
    `timeout`). Tests and benchmarks wait on it after a flush of the Redis database, which resets the sequence:
    the follower flushes once when the next message shows that, and the sequence alone cannot tell whether
    that message has arrived when it lands on the number the follower last saw."""
    feed = _current_feed()
    progress = feed.progress if isinstance(feed, _RedisFeed) else 0
    invalidate_everything_now()
    deadline = time.monotonic() + timeout
    while not _has_heard_since(feed, progress):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def _has_heard_since(feed: _RedisFeed | _LogFeed, progress: int) -> bool:
    if isinstance(feed, _LogFeed):
        return feed.stamp() is not None
    try:
        return feed.live.is_set() and feed.progress > progress and feed.last_sequence == feed._sequence_now()
    except redis.RedisError:
        return False
