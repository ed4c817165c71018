"""Answering from memory: inside `answering_from_memory()` a service either answers exactly as it would
anywhere else or raises `NeedsIO` having changed nothing, so running it again in a worker loses and doubles
nothing."""

import time

import pytest
from django.db import connection

from audit.models import AuditEvent
from grants.services import grant_permission
from kernel.callers import Caller
from kernel.invalidation import current_stamp, invalidate_now, key_topic, session_topic
from kernel.memory_only import NeedsIO, NeedsRead, answering_from_memory, answering_without_writes
from keys import services as key_services
from keys import usage as key_usage
from keys.credentials import authenticate_bearer
from keys.models import ApiKey
from keys.services import generate_api_key, validate_api_key
from keys.tokens import generate_jwt, revoke_jwt, validate_jwt
from mcp_endpoint.connections import ConnectionSession

SYSTEM = Caller.system("tests")


@pytest.fixture
def cast(make_identity):
    validator = make_identity("CHITTY-PEO-MEMVALIDATOR-A")
    owner = make_identity("CHITTY-PEO-MEMOWNER-A")
    grant_permission(SYSTEM, grantee_chitty_id=validator.chitty_id, permission="api_keys:validate")
    grant_permission(SYSTEM, grantee_chitty_id=validator.chitty_id, permission="tokens:validate")
    caller_key = generate_api_key(SYSTEM, chitty_id=validator.chitty_id, scopes=["*"])
    return authenticate_bearer(caller_key.secret), owner


def from_memory(function, *args):
    with answering_from_memory():
        return function(*args)


def test_a_cold_key_needs_io_and_a_warm_one_is_answered_the_same(cast):
    caller, owner = cast
    issued = generate_api_key(SYSTEM, chitty_id=owner.chitty_id)
    with pytest.raises(NeedsIO):
        from_memory(validate_api_key, caller, issued.secret)
    answer = validate_api_key(caller, issued.secret)
    assert answer.valid
    assert from_memory(validate_api_key, caller, issued.secret) == answer


def test_a_revoked_key_is_never_answered_valid_from_memory(cast):
    caller, owner = cast
    issued = generate_api_key(SYSTEM, chitty_id=owner.chitty_id)
    assert validate_api_key(caller, issued.secret).valid
    key_services.revoke_api_key(SYSTEM, issued.api_key.key_id)
    with pytest.raises(NeedsIO):  # the key was invalidated: the cached answer is gone
        from_memory(validate_api_key, caller, issued.secret)
    assert validate_api_key(caller, issued.secret).code == "REVOKED"


def test_a_failed_validation_is_audited_once_not_from_memory(cast):
    caller, owner = cast
    issued = generate_api_key(SYSTEM, chitty_id=owner.chitty_id)
    key_services.revoke_api_key(SYSTEM, issued.api_key.key_id)
    assert validate_api_key(caller, issued.secret).code == "REVOKED"
    before = AuditEvent.objects.filter(action="api_key.validate").count()
    with pytest.raises(NeedsIO):
        from_memory(validate_api_key, caller, issued.secret)
    assert AuditEvent.objects.filter(action="api_key.validate").count() == before
    validate_api_key(caller, issued.secret)
    assert AuditEvent.objects.filter(action="api_key.validate").count() == before + 1


def test_use_counts_due_for_writing_need_io_and_none_is_lost_or_doubled(cast, monkeypatch):
    caller, owner = cast
    issued = generate_api_key(SYSTEM, chitty_id=owner.chitty_id)
    assert validate_api_key(caller, issued.secret).valid  # warm, one use pending
    from_memory(validate_api_key, caller, issued.secret)  # a second use, nothing due yet
    monkeypatch.setattr(key_usage, "USAGE_FLUSH_INTERVAL_SECONDS", 0)
    key_usage._write_deadlines[0] = (0.0, issued.api_key.key_id)  # the pending uses are now due
    with pytest.raises(NeedsIO):
        from_memory(validate_api_key, caller, issued.secret)
    assert validate_api_key(caller, issued.secret).valid  # run again where writing is fine
    assert ApiKey.objects.get(key_id=issued.api_key.key_id).use_count == 3


def test_a_due_write_takes_the_counts_due_soon_so_a_stream_of_new_keys_stays_in_memory(cast):
    caller, owner = cast
    first, soon, later = (generate_api_key(SYSTEM, chitty_id=owner.chitty_id) for _ in range(3))
    for issued in (first, soon, later):
        assert validate_api_key(caller, issued.secret).valid  # one use pending each
    interval = key_usage.USAGE_FLUSH_INTERVAL_SECONDS
    assert interval * key_usage.WRITE_AHEAD_SHARE > 2
    now = time.monotonic()
    key_usage._write_deadlines.clear()
    key_usage._write_deadlines.extend(
        [
            (now - 1, first.api_key.key_id),  # due
            (now + 2, soon.api_key.key_id),  # due in 2 s: within the share of the interval written ahead
            (now + interval, later.api_key.key_id),  # due a whole interval from now
        ]
    )
    with pytest.raises(NeedsIO):
        from_memory(validate_api_key, caller, first.secret)
    assert validate_api_key(caller, first.secret).valid  # writes the due count and the one due soon
    assert from_memory(validate_api_key, caller, soon.secret).valid  # nothing due any more: no write
    counts = dict(ApiKey.objects.values_list("key_id", "use_count"))
    assert [counts[issued.api_key.key_id] for issued in (first, soon, later)] == [2, 1, 0]


def test_tokens_are_answered_from_memory_only_while_nothing_changed(cast):
    caller, owner = cast
    first, second = (generate_jwt(SYSTEM, chitty_id=owner.chitty_id) for _ in range(2))
    assert validate_jwt(caller, first.token).valid
    assert from_memory(validate_jwt, caller, second.token).valid  # fresh token, warm caches
    revoke_jwt(SYSTEM, token=second.token)
    with pytest.raises(NeedsIO):
        from_memory(validate_jwt, caller, second.token)
    assert validate_jwt(caller, second.token).code == "REVOKED"


def test_a_session_being_rechecked_by_a_worker_is_not_waited_for(db):
    session = ConnectionSession("ses_memory_only", owned=False)
    session._lock.acquire()  # a worker thread is in the middle of re-checking it
    try:
        with pytest.raises(NeedsIO):
            from_memory(session.ensure_live)
    finally:
        session._lock.release()
    from_memory(session.ensure_live)  # nothing to re-check, nobody holding it: answered from memory


def test_a_session_is_rechecked_only_when_something_it_depends_on_changed(db):
    session = ConnectionSession("ses_memory_only", owned=False, depends_on=(key_topic("key_of_the_session"),))
    invalidate_now(key_topic("some_other_key"), session_topic("ses_other"))
    assert from_memory(lambda: session.is_settled(active=False))
    for topic in (session_topic("ses_memory_only"), key_topic("key_of_the_session")):
        invalidate_now(topic)
        with pytest.raises(NeedsIO):  # its session or credential changed: both must be re-checked
            from_memory(session.ensure_live)


def test_a_revocation_landing_mid_answer_is_seen_by_the_rest_of_that_answer(cast):
    """The stamp new entries get is read once per answer, but freshness is judged against the latest changes:
    an answer never serves an entry invalidated while it ran."""
    caller, owner = cast
    issued = generate_api_key(SYSTEM, chitty_id=owner.chitty_id)
    assert validate_api_key(caller, issued.secret).valid  # warm
    with pytest.raises(NeedsIO), answering_from_memory():
        before = current_stamp()
        invalidate_now(key_topic(issued.api_key.key_id))
        assert current_stamp() == before
        validate_api_key(caller, issued.secret)


def test_outside_a_memory_answer_every_read_sees_the_latest_stamp(db):
    before = current_stamp()
    invalidate_now(key_topic("any"))
    assert current_stamp() > before


def test_answering_without_writes_reads_but_refuses_every_write_before_it_happens(cast):
    """The worker-thread mode: a cold key is answered with its read; a write nobody guarded is refused by the
    database connection itself, and nothing is written."""
    caller, owner = cast
    issued = generate_api_key(SYSTEM, chitty_id=owner.chitty_id)
    with answering_without_writes():
        assert validate_api_key(caller, issued.secret).valid
    events = AuditEvent.objects.count()
    with pytest.raises(NeedsIO), answering_without_writes(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE keys_apikey SET name = %s WHERE key_id = %s", ["renamed", issued.api_key.key_id]
        )
    with pytest.raises(NeedsIO), answering_without_writes():
        validate_api_key(caller, "chitty_live_" + "A" * 49)  # a refusal to audit is a write
    assert ApiKey.objects.get(key_id=issued.api_key.key_id).name != "renamed"
    assert AuditEvent.objects.count() == events


def test_a_read_inside_a_memory_answer_is_a_needs_read(cast):
    caller, owner = cast
    issued = generate_api_key(SYSTEM, chitty_id=owner.chitty_id)
    with pytest.raises(NeedsRead), answering_from_memory():
        validate_api_key(caller, issued.secret)
