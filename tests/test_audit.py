"""The audit trail: a hash chain that `verify_audit` checks, that commits with the change it records, and
that never holds a secret.

Tampering goes through raw SQL, as an attacker with database access would, never through our services.
"""

import hashlib
import io
import itertools
import json
import os
import secrets
import sqlite3
import string
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client

from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent
from audit.services import ChainVerdict, canonical_event_json, chain_hash, event_hash, record, verify_chain
from identities.models import Identity
from principals.services import register_identity

REPO_ROOT = Path(__file__).resolve().parent.parent
TABLE = AuditEvent._meta.db_table
BASE62 = string.digits + string.ascii_letters
# A subprocess gets its own SQLite file and the local authority, whatever the test run is configured with.
ISOLATED_SETTINGS = ("DATABASE_URL", "REDIS_URL", "CHITTYID_ENDPOINT", "ENVIRONMENT", "DEBUG")

pytestmark = pytest.mark.django_db


def make_trail(length: int = 6) -> list[AuditEvent]:
    return [
        record(
            "test.event",
            actor=f"tester:{n}",
            target=f"CHITTY-PEO-TARGET{n}-A",
            client_address=f"10.0.0.{n}",
            details={"n": n, "nested": {"items": [n, str(n)]}},
        )
        for n in range(1, length + 1)
    ]


def run_sql(sql: str, params: list | tuple = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql.replace("{table}", connection.ops.quote_name(TABLE)), params)


def shift_sequences_up(from_sequence: int) -> None:
    """Make room for a forged event; two steps because `sequence` is unique row by row."""
    run_sql("UPDATE {table} SET sequence = -(sequence + 1) WHERE sequence >= %s", [from_sequence])
    run_sql("UPDATE {table} SET sequence = -sequence WHERE sequence < 0")


def insert_forged_event(sequence: int, prev_hash: str) -> None:
    """Insert a well-formed event with a correct hash for its own contents, as a careful forger would."""
    forged = AuditEvent(
        sequence=sequence,
        created_at=AuditEvent.objects.order_by("-sequence").first().created_at,
        actor="staff:mallory",
        action="identity.register",
        target="CHITTY-PEO-FORGED-A",
        outcome="success",
        client_address="10.6.6.6",
        details={"forged": True},
        prev_hash=prev_hash,
    )
    forged.hash = chain_hash(
        prev_hash,
        canonical_event_json(
            sequence=forged.sequence,
            created_at=forged.created_at,
            actor=forged.actor,
            action=forged.action,
            target=forged.target,
            outcome=forged.outcome,
            client_address=forged.client_address,
            details=forged.details,
        ),
    )
    fields = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    values = [f.get_db_prep_save(getattr(forged, f.attname), connection) for f in fields]
    run_sql(f"INSERT INTO {{table}} ({columns}) VALUES ({placeholders})", values)  # noqa: S608


def verify_command_failure() -> str:
    with pytest.raises(CommandError) as failure:
        call_command("verify_audit", stdout=io.StringIO())
    return str(failure.value)


def hash_of(sequence: int) -> str:
    return AuditEvent.objects.get(sequence=sequence).hash


# The chain itself


def test_record_links_every_event_to_the_one_before_it():
    events = make_trail(5)

    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert len({e.hash for e in events}) == 5
    head = AuditChainHead.objects.get()
    assert (head.sequence, head.hash) == (5, events[-1].hash)


def test_stored_hash_is_sha256_of_previous_hash_and_the_canonical_event():
    event = make_trail(1)[0]
    stored = AuditEvent.objects.get(pk=event.pk)
    canonical = json.dumps(
        {
            "sequence": 1,
            "created_at": stored.created_at.isoformat(),
            "actor": "tester:1",
            "action": "test.event",
            "target": "CHITTY-PEO-TARGET1-A",
            "outcome": "success",
            "client_address": "10.0.0.1",
            "details": {"n": 1, "nested": {"items": [1, "1"]}},
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    assert stored.hash == hashlib.sha256((GENESIS_HASH + canonical).encode()).hexdigest()


def test_verify_audit_reports_an_intact_chain():
    make_trail(6)
    out = io.StringIO()

    call_command("verify_audit", stdout=out)

    assert "Audit chain intact: 6 events verified." in out.getvalue()


def test_verify_audit_accepts_an_empty_trail():
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert "0 events verified" in out.getvalue()


# Tampering through raw SQL


def test_editing_a_field_of_a_middle_event_is_caught_at_that_event():
    make_trail(6)
    run_sql("UPDATE {table} SET actor = %s WHERE sequence = 3", ["staff:mallory"])

    message = verify_command_failure()

    assert "BROKEN at sequence 3:" in message
    assert "hash does not match the event's contents" in message


def test_editing_details_of_a_middle_event_is_caught_at_that_event():
    make_trail(6)
    details = AuditEvent._meta.get_field("details").get_db_prep_save({"n": 999}, connection)
    run_sql("UPDATE {table} SET details = %s WHERE sequence = 4", [details])

    assert "BROKEN at sequence 4:" in verify_command_failure()


def test_editing_an_event_and_recomputing_its_hash_is_caught_at_the_next_event():
    make_trail(6)
    run_sql("UPDATE {table} SET outcome = %s WHERE sequence = 3", ["denied"])
    tampered = AuditEvent.objects.get(sequence=3)
    run_sql("UPDATE {table} SET hash = %s WHERE sequence = 3", [event_hash(tampered)])

    message = verify_command_failure()

    assert "BROKEN at sequence 4:" in message
    assert "prev_hash does not match the previous event" in message


def test_deleting_a_middle_event_is_caught_where_it_is_missing():
    make_trail(6)
    run_sql("DELETE FROM {table} WHERE sequence = 3")

    message = verify_command_failure()

    assert "BROKEN at sequence 3: sequence 3 is missing" in message
    assert "(2 events verified before it)" in message


def test_deleting_the_first_event_is_caught():
    make_trail(3)
    run_sql("DELETE FROM {table} WHERE sequence = 1")

    assert "BROKEN at sequence 1: sequence 1 is missing" in verify_command_failure()


def test_deleting_the_last_event_is_caught_by_the_chain_head():
    make_trail(6)
    run_sql("DELETE FROM {table} WHERE sequence = 6")

    message = verify_command_failure()

    assert "BROKEN at sequence 6:" in message
    assert "cut from the end" in message


def test_deleting_the_last_events_names_the_first_one_cut():
    make_trail(6)
    run_sql("DELETE FROM {table} WHERE sequence >= 4")

    assert "BROKEN at sequence 4: events 4 to 6 were cut from the end" in verify_command_failure()


def test_swapping_two_events_sequence_numbers_is_caught_at_the_first_swapped():
    make_trail(6)
    run_sql("UPDATE {table} SET sequence = -1 WHERE sequence = 2")
    run_sql("UPDATE {table} SET sequence = 2 WHERE sequence = 4")
    run_sql("UPDATE {table} SET sequence = 4 WHERE sequence = -1")

    message = verify_command_failure()

    assert "BROKEN at sequence 2:" in message
    assert "prev_hash does not match the previous event" in message


def test_a_forged_event_inserted_in_the_middle_breaks_the_link_after_it():
    """The forger can hash its own event correctly; the event it pushed aside no longer links to it."""
    make_trail(6)
    shift_sequences_up(4)
    insert_forged_event(4, prev_hash=hash_of(3))

    message = verify_command_failure()

    assert "BROKEN at sequence 5:" in message
    assert "prev_hash does not match the previous event" in message
    assert "(4 events verified before it)" in message


def test_a_forged_event_appended_at_the_end_is_caught_by_the_chain_head():
    make_trail(6)
    insert_forged_event(7, prev_hash=hash_of(6))

    message = verify_command_failure()

    assert "BROKEN at sequence 7:" in message
    assert "added outside the audit service" in message


def test_replacing_the_last_event_with_a_well_hashed_forgery_is_caught():
    make_trail(6)
    prev_hash = hash_of(5)
    run_sql("DELETE FROM {table} WHERE sequence = 6")
    insert_forged_event(6, prev_hash=prev_hash)

    message = verify_command_failure()

    assert "BROKEN at sequence 6:" in message


def test_deleting_the_chain_head_is_caught():
    make_trail(3)
    AuditChainHead.objects.all().delete()

    assert not verify_chain().intact


def test_verify_audit_exit_code_is_real(tmp_path):
    """Through a real process: exit 0 when intact, non-zero naming the link once a row is edited."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in ISOLATED_SETTINGS},
        "CHITTYAUTH_VAR_DIR": str(tmp_path),
    }

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert manage("migrate", "--noinput", "-v0").returncode == 0
    for chitty_id in ("CHITTY-PEO-ALICE-1", "CHITTY-PEO-BOB-2", "CHITTY-PEO-CAROL-3"):
        assert manage("register_identity", chitty_id).returncode == 0

    intact = manage("verify_audit")
    assert intact.returncode == 0, intact.stderr
    assert "Audit chain intact: 3 events verified." in intact.stdout

    with sqlite3.connect(tmp_path / "chittyauth.sqlite3") as db:
        db.execute(f"UPDATE {TABLE} SET target = 'CHITTY-PEO-MALLORY-6' WHERE sequence = 2")  # noqa: S608
    broken = manage("verify_audit")

    assert broken.returncode != 0
    assert "BROKEN at sequence 2:" in broken.stderr


# One transaction with the change it records


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_takes_its_audit_event_with_it(system_caller):
    """A real transaction (not the test's savepoint): the caller's failure after the change undoes both."""
    make_trail(2)

    with pytest.raises(RuntimeError), transaction.atomic():
        register_identity(system_caller, "CHITTY-PEO-ROLLBACK-1")
        assert AuditEvent.objects.filter(target="CHITTY-PEO-ROLLBACK-1").exists()
        raise RuntimeError("the caller's later step failed")

    assert not Identity.objects.filter(chitty_id="CHITTY-PEO-ROLLBACK-1").exists()
    assert not AuditEvent.objects.filter(target="CHITTY-PEO-ROLLBACK-1").exists()
    assert AuditChainHead.objects.get().sequence == 2
    assert verify_chain().intact
    assert record("test.after-rollback").sequence == 3
    assert verify_chain() == ChainVerdict(True, 3)


def test_a_committed_change_and_its_event_land_together(system_caller):
    register_identity(system_caller, "CHITTY-PEO-COMMIT-1")

    event = AuditEvent.objects.get(target="CHITTY-PEO-COMMIT-1")
    assert event.action == "identity.register"
    assert Identity.objects.filter(chitty_id="CHITTY-PEO-COMMIT-1").exists()
    assert verify_chain().intact


# Secrets never stored


def real_looking_api_key() -> str:
    return "chitty_live_" + "".join(secrets.choice(BASE62) for _ in range(49))


def real_jwt() -> str:
    return jwt.encode(
        {"sub": "CHITTY-PEO-ALICE-1", "chitty_id": "CHITTY-PEO-ALICE-1", "scope": "read"},
        secrets.token_bytes(32),
        algorithm="HS256",
        headers={"typ": "at+jwt"},
    )


def stored_row_text(event: AuditEvent) -> str:
    """The event's row as the database holds it, every column as text."""
    columns = ", ".join(connection.ops.quote_name(f.column) for f in AuditEvent._meta.concrete_fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {connection.ops.quote_name(TABLE)} WHERE id = %s",  # noqa: S608
            [event.pk],
        )
        row = cursor.fetchone()
    return " ".join(json.dumps(value) if isinstance(value, dict | list) else str(value) for value in row)


def secret_fragments(api_key: str, token: str) -> list[str]:
    """Pieces that must not survive: the key's random part past its display prefix, each JWT segment."""
    random_part = api_key[len("chitty_live_") :]
    return [api_key, random_part[4:], random_part[4:20], token, *token.split(".")]


def test_api_keys_and_jwts_in_details_are_masked_wherever_they_hide():
    api_key, token = real_looking_api_key(), real_jwt()
    password = "correct-horse-battery-" + secrets.token_hex(8)
    details = {
        "note": f"client sent {api_key} then {token}",
        "header": f"Bearer {token}",
        "items": [api_key, {"deeper": [token, {"deepest": api_key}]}],
        "pair": (api_key, token),
        "a_set": {api_key},
        "raw_bytes": token.encode(),
        api_key: "a secret used as a field name",
        "api_key": api_key,
        "apiKey": api_key,
        "X-API-Key": api_key,
        "Authorization": f"Bearer {token}",
        "access_token": token,
        "new_password": password,
        "client_secret": password,
    }

    event = record("test.masking", details=details, target=api_key, actor=f"bearer {token}")

    stored = stored_row_text(event)
    for fragment in [*secret_fragments(api_key, token), password]:
        assert fragment not in stored
    assert verify_chain().intact


def test_masking_keeps_what_an_investigator_needs():
    api_key = real_looking_api_key()

    event = record(
        "test.masking",
        details={"key_id": "key_abc123", "key_prefix": api_key[:16], "token_type": "at+jwt", "note": api_key},
    )

    stored = AuditEvent.objects.get(pk=event.pk).details
    assert stored["key_id"] == "key_abc123"
    assert stored["token_type"] == "at+jwt"
    assert stored["note"].startswith(api_key[:16])
    assert stored["note"] != api_key


def test_secret_named_fields_are_masked_even_when_not_secret_shaped():
    event = record("test.masking", details={"password": "hunter2", "nested": {"ClientSecret": "s3"}})

    stored = AuditEvent.objects.get(pk=event.pk).details
    assert stored == {"password": "***", "nested": {"ClientSecret": "***"}}


# Whatever the caller passes, the event is stored and still verifies


def test_odd_but_valid_inputs_are_stored_and_the_chain_verifies():
    record("test.ipv6", client_address="2001:0DB8:0000:0000:0000:0000:0000:0001")
    record("test.ipv4-compatible", client_address="::1.2.3.4")
    record("test.ipv4-mapped", client_address="::ffff:10.10.10.10")
    record("test.zone", client_address="fe80::1%eth0")
    record(
        "test.numbers",
        details={"big": 1e16, "whole": 2.0, "fraction": 0.1, "tiny": 1e-7, "huge_int": 2**70, "flag": True},
    )
    record("test.non-finite", details={"nan": float("nan"), "inf": float("inf")})
    record("test.text", actor="nul\x00byte", details={"nul": "a\x00b", "surrogate": "\udc80", 3: "int key"})

    assert AuditEvent.objects.get(action="test.ipv6").client_address == "2001:db8::1"
    assert AuditEvent.objects.get(action="test.non-finite").details == {"nan": "nan", "inf": "inf"}
    assert verify_chain() == ChainVerdict(True, 7)


def test_an_over_long_target_is_cut_to_the_column_and_still_recorded():
    record("test.long", target="T" * 1000, actor="A" * 1000)

    event = AuditEvent.objects.get(action="test.long")
    assert event.target == "T" * 255
    assert event.actor == "A" * 255
    assert verify_chain().intact


def test_a_client_address_that_is_not_an_ip_is_kept_in_details_not_lost():
    record("test.bad-address", client_address="203.0.113.9, 10.0.0.1")

    event = AuditEvent.objects.get(action="test.bad-address")
    assert event.client_address is None
    assert event.details["client_address_unparsed"] == "203.0.113.9, 10.0.0.1"
    assert verify_chain().intact


# The admin: readable, never writable


@pytest.fixture
def superuser_client():
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-" + secrets.token_hex(8))
    client = Client()
    client.force_login(user)
    return client


def test_admin_lists_searches_and_filters_events(superuser_client):
    before = AuditEvent.objects.count()  # the staff login itself is audited
    make_trail(3)
    suspended = record("identity.suspend", outcome="denied", actor="staff:alice", client_address="192.0.2.7")

    listing = superuser_client.get("/admin/audit/auditevent/")
    by_actor = superuser_client.get("/admin/audit/auditevent/", {"q": "alice"})
    by_address = superuser_client.get("/admin/audit/auditevent/", {"q": "192.0.2.7"})
    denied = superuser_client.get("/admin/audit/auditevent/", {"outcome__exact": "denied"})

    assert listing.status_code == 200
    assert listing.context["cl"].result_count == before + 4
    assert by_actor.status_code == 200
    assert [e.actor for e in by_actor.context["cl"].result_list] == ["staff:alice"]
    assert [e.actor for e in by_address.context["cl"].result_list] == ["staff:alice"]
    assert [e.sequence for e in denied.context["cl"].result_list] == [suspended.sequence]


def test_admin_cannot_add_change_or_delete_events_even_as_superuser(superuser_client):
    event = make_trail(1)[0]
    change_url = f"/admin/audit/auditevent/{event.pk}/change/"

    assert superuser_client.get("/admin/audit/auditevent/add/").status_code == 403
    assert superuser_client.get(f"/admin/audit/auditevent/{event.pk}/delete/").status_code == 403
    assert superuser_client.get(change_url).status_code == 200
    superuser_client.post(change_url, {"actor": "staff:mallory"})
    superuser_client.post(
        "/admin/audit/auditevent/",
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )

    assert AuditEvent.objects.get(pk=event.pk).actor == "tester:1"
    assert verify_chain().intact
