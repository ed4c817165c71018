"""API keys: the format, every verification code, the warm cache's invalidation, rotation, permissions and
escalation refusals, the fail-closed authority, usage counting, and that no secret is ever stored."""

import hashlib
import json
import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from grants.services import grant_permission
from identities.models import Identity
from kernel.callers import Caller
from kernel.errors import (
    AuthorityUnavailable,
    Conflict,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from keys import usage as key_usage
from keys import verification as key_verification
from keys.key_format import (
    API_KEY_LENGTH,
    BASE62_ALPHABET,
    InvalidApiKey,
    checksum,
    display_prefix,
    generate_api_key_secret,
    generate_key_id,
    hash_api_key,
    is_key_id,
    parse_api_key,
)
from keys.models import ApiKey
from keys.services import (
    IssuedApiKey,
    KeyVerification,
    flush_usage,
    generate_api_key,
    get_api_key,
    list_api_keys,
    revoke_api_key,
    rotate_api_key,
    validate_api_key,
    verify_api_key,
)
from principals.services import change_status, reactivate_identity, suspend_identity

SYSTEM = Caller.system("tests")
KEY_RE = re.compile(r"chitty_(live|test)_[0-9A-Za-z]{43}[0-9A-Za-z]{6}")


def caller_of(identity: Identity, scopes: tuple[str, ...] = ("*",)) -> Caller:
    return Caller(
        actor=identity.chitty_id,
        identity=identity,
        credential_type="api_key",
        credential_id="key_tests",
        scopes=tuple(scopes),
    )


def caller_from(verification: KeyVerification) -> Caller:
    """The Caller authentication builds from a verified key."""
    assert verification.valid
    return Caller(
        actor=verification.chitty_id,
        identity=verification.identity,
        credential_type="api_key",
        credential_id=verification.key_id,
        scopes=verification.scopes,
    )


def grant(identity: Identity, permission: str) -> None:
    grant_permission(SYSTEM, grantee_chitty_id=identity.chitty_id, permission=permission)


def issue(identity: Identity, **options) -> IssuedApiKey:
    return generate_api_key(SYSTEM, chitty_id=identity.chitty_id, **options)


def mistype(secret: str, position: int) -> str:
    replacement = "B" if secret[position] == "A" else "A"
    return secret[:position] + replacement + secret[position + 1 :]


@pytest.fixture
def usage(db):
    """No pending use counts cross from one test into another."""
    flush_usage()
    yield
    flush_usage()


@pytest.fixture
def alice(make_identity, usage) -> Identity:
    return make_identity("CHITTY-PEO-ALICE1-A")


@pytest.fixture
def bob(make_identity, usage) -> Identity:
    return make_identity("CHITTY-PEO-BOB1-A")


@pytest.fixture
def clock(monkeypatch):
    """Moves Django's clock forward without sleeping."""

    class Clock:
        offset = timedelta(0)

        def advance(self, **delta) -> None:
            self.offset += timedelta(**delta)

    moved = Clock()
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + moved.offset)
    return moved


# --- format -----------------------------------------------------------------------------------------------


def test_generated_keys_have_the_documented_shape_and_a_valid_checksum():
    live, test = generate_api_key_secret("live"), generate_api_key_secret("test")
    assert KEY_RE.fullmatch(live) and live.startswith("chitty_live_")
    assert KEY_RE.fullmatch(test) and test.startswith("chitty_test_")
    assert len(live) == API_KEY_LENGTH == 61
    assert live[-6:] == checksum(live[:-6])
    assert parse_api_key(live).environment == "live"
    assert parse_api_key(live).display_prefix == display_prefix(live) == live[:16]
    assert generate_api_key_secret("live") != live


def test_the_random_part_carries_at_least_256_bits():
    assert len(BASE62_ALPHABET) ** 43 >= 2**256
    bodies = {generate_api_key_secret("live")[12:-6] for _ in range(200)}
    assert len(bodies) == 200
    assert set("".join(bodies)) <= set(BASE62_ALPHABET)


def test_unknown_environment_is_refused():
    with pytest.raises(ValidationFailed) as caught:
        generate_api_key_secret("prod")
    assert caught.value.code == "INVALID_ENVIRONMENT"


def test_every_single_character_typo_fails_the_checksum():
    secret = generate_api_key_secret("live")
    for position in range(len("chitty_live_"), len(secret)):
        with pytest.raises(InvalidApiKey) as caught:
            parse_api_key(mistype(secret, position))
        assert caught.value.code == "BAD_CHECKSUM"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        12345,
        b"chitty_live_abc",
        "",
        "chitty_live_",
        "chitty_prod_" + "A" * 49,
        "chittx_live_" + "A" * 49,
        "chitty_live_" + "A" * 48,
        "chitty_live_" + "A" * 50,
        "chitty_live_" + "A" * 48 + "-",
        " chitty_live_" + "A" * 48,
    ],
)
def test_malformed_input_is_malformed(raw):
    with pytest.raises(InvalidApiKey) as caught:
        parse_api_key(raw)
    assert caught.value.code == "MALFORMED"


def test_typos_and_junk_are_rejected_without_touching_the_database():
    # No `db` fixture: pytest-django fails any query this test makes.
    secret = generate_api_key_secret("live")
    assert verify_api_key(mistype(secret, 20)).code == "BAD_CHECKSUM"
    assert verify_api_key("Bearer something").code == "MALFORMED"
    assert verify_api_key(None).code == "MALFORMED"
    assert verify_api_key(["chitty_live_"]).code == "MALFORMED"


def test_hash_prefix_and_key_id():
    secret = generate_api_key_secret("test")
    assert hash_api_key(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert display_prefix(secret) == secret[:16]
    assert display_prefix(secret).startswith("chitty_test_")
    with pytest.raises(InvalidApiKey):
        display_prefix("not a key")
    key_id = generate_key_id()
    assert re.fullmatch(r"key_[0-9A-Za-z]{20}", key_id) and is_key_id(key_id)
    assert not is_key_id("key_short") and not is_key_id(None)


def test_secrets_stay_out_of_reprs():
    secret = generate_api_key_secret("live")
    assert secret not in repr(parse_api_key(secret))
    assert secret not in repr(IssuedApiKey(api_key=ApiKey(key_id="key_x"), secret=secret))


# --- verification -------------------------------------------------------------------------------------------


def test_a_fresh_key_verifies_with_its_details(alice):
    grant(alice, "docs:read")
    expires = timezone.now() + timedelta(days=30)
    issued = issue(alice, name="ci", scopes=["docs:read"], expires_at=expires, environment="test")
    verification = verify_api_key(issued.secret)
    assert verification.valid and verification.code == "VALID"
    assert verification.identity == alice
    assert verification.as_dict() == {
        "valid": True,
        "code": "VALID",
        "key_id": issued.api_key.key_id,
        "chitty_id": alice.chitty_id,
        "scopes": ["docs:read"],
        "expires_at": expires.isoformat(),
        "name": "ci",
        "environment": "test",
    }
    json.dumps(verification.as_dict())


def test_an_unknown_key_is_not_found_and_says_nothing_more(usage):
    verification = verify_api_key(generate_api_key_secret("live"))
    assert verification.as_dict() == {
        "valid": False,
        "code": "NOT_FOUND",
        "key_id": None,
        "chitty_id": None,
        "scopes": [],
        "expires_at": None,
        "name": "",
        "environment": "",
    }


def test_misses_are_not_cached_so_a_new_key_works_at_once(alice):
    secret = generate_api_key_secret("live")
    assert verify_api_key(secret).code == "NOT_FOUND"
    ApiKey.objects.create(
        key_id=generate_key_id(),
        principal=alice,
        secret_hash=hash_api_key(secret),
        display_prefix=display_prefix(secret),
        scopes=["*"],
    )
    assert verify_api_key(secret).code == "VALID"


def test_a_warm_verification_needs_no_query(alice, django_assert_num_queries):
    issued = issue(alice)
    with django_assert_num_queries(1):
        assert verify_api_key(issued.secret).valid
    with django_assert_num_queries(0):
        assert verify_api_key(issued.secret).valid


def test_revocation_is_seen_by_the_very_next_verification_with_a_warm_cache(alice, django_assert_num_queries):
    issued = issue(alice)
    assert verify_api_key(issued.secret).valid
    with django_assert_num_queries(0):
        assert verify_api_key(issued.secret).valid
    revoke_api_key(caller_of(alice), issued.api_key.key_id, reason="leaked")
    verification = verify_api_key(issued.secret)
    assert verification.code == "REVOKED" and not verification.valid
    assert verification.key_id == issued.api_key.key_id and verification.identity is None


def test_expiry_is_judged_on_the_clock_even_when_cached(alice, clock, django_assert_num_queries):
    issued = issue(alice, expires_at=timezone.now() + timedelta(minutes=5))
    assert verify_api_key(issued.secret).valid
    clock.advance(minutes=6)
    with django_assert_num_queries(0):
        assert verify_api_key(issued.secret).code == "EXPIRED"


def test_suspending_the_identity_stops_its_keys_at_once(alice):
    issued = issue(alice)
    assert verify_api_key(issued.secret).valid
    suspend_identity(SYSTEM, alice, reason="investigation")
    assert verify_api_key(issued.secret).code == "IDENTITY_SUSPENDED"
    reactivate_identity(SYSTEM, alice)
    assert verify_api_key(issued.secret).valid
    change_status(SYSTEM, alice, Identity.Status.REVOKED)
    assert verify_api_key(issued.secret).code == "IDENTITY_SUSPENDED"


def test_codes_are_reported_in_order_revoked_expired_suspended(alice, bob, clock):
    revoked_and_expired = issue(alice, expires_at=timezone.now() + timedelta(minutes=1))
    revoke_api_key(SYSTEM, revoked_and_expired.api_key.key_id)
    expired_and_suspended = issue(bob, expires_at=timezone.now() + timedelta(minutes=1))
    suspend_identity(SYSTEM, bob)
    clock.advance(minutes=2)
    assert verify_api_key(revoked_and_expired.secret).code == "REVOKED"
    assert verify_api_key(expired_and_suspended.secret).code == "EXPIRED"


def test_the_cache_is_bounded_and_keeps_the_recently_used(alice, settings, django_assert_num_queries):
    settings.HOT_CACHE_MAX_ENTRIES = 2
    hot, *others = [issue(alice).secret for _ in range(4)]
    for secret in others:  # more live keys than the cache holds: each still validates
        assert verify_api_key(hot).valid
        assert verify_api_key(secret).valid
    assert len(key_verification._cache) == 2
    with django_assert_num_queries(0):  # the key used all along was never the one evicted
        assert verify_api_key(hot).valid
    with django_assert_num_queries(1):
        assert verify_api_key(others[0]).valid


# --- usage counting ----------------------------------------------------------------------------------------


def test_uses_are_counted_in_memory_and_arrive_on_flush(alice, django_assert_num_queries):
    issued = issue(alice)
    assert verify_api_key(issued.secret).valid
    with django_assert_num_queries(0):
        for _ in range(4):
            assert verify_api_key(issued.secret).valid
    issued.api_key.refresh_from_db()
    assert issued.api_key.use_count == 0
    assert flush_usage() == 1
    issued.api_key.refresh_from_db()
    assert issued.api_key.use_count == 5
    assert issued.api_key.last_used_at is not None
    assert flush_usage() == 0


def test_uses_are_written_by_verification_once_the_interval_has_passed(alice, monkeypatch):
    monkeypatch.setattr(key_usage, "USAGE_FLUSH_INTERVAL_SECONDS", 0)
    issued = issue(alice)
    verify_api_key(issued.secret)
    verify_api_key(issued.secret)
    issued.api_key.refresh_from_db()
    assert issued.api_key.use_count == 2


def test_last_used_never_moves_backwards_and_rejections_are_not_counted(alice):
    later = timezone.now() + timedelta(hours=1)
    counted, revoked = issue(alice), issue(alice)
    ApiKey.objects.filter(pk=counted.api_key.pk).update(last_used_at=later, use_count=10)
    revoke_api_key(SYSTEM, revoked.api_key.key_id)
    verify_api_key(counted.secret)
    verify_api_key(revoked.secret)
    flush_usage()
    counted.api_key.refresh_from_db()
    revoked.api_key.refresh_from_db()
    assert (counted.api_key.use_count, counted.api_key.last_used_at) == (11, later)
    assert (revoked.api_key.use_count, revoked.api_key.last_used_at) == (0, None)


def _refuse_key_updates() -> None:
    """A real database failure for usage writes: a trigger that aborts any UPDATE of an API key row."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER refuse_key_updates BEFORE UPDATE ON keys_apikey "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_key_updates() RETURNS trigger AS $$ "
                "BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_key_updates BEFORE UPDATE ON keys_apikey "
                "FOR EACH ROW EXECUTE FUNCTION refuse_key_updates()"
            )


def _allow_key_updates() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER refuse_key_updates"
            if connection.vendor == "sqlite"
            else "DROP TRIGGER refuse_key_updates ON keys_apikey"
        )


def test_counts_survive_a_failed_write_and_verification_goes_on(alice, monkeypatch, caplog):
    monkeypatch.setattr(key_usage, "USAGE_FLUSH_INTERVAL_SECONDS", 0)
    issued = issue(alice)
    _refuse_key_updates()
    assert verify_api_key(issued.secret).valid
    assert "Could not record the use of 1 API keys" in caplog.text
    assert verify_api_key(issued.secret).valid
    assert flush_usage() == 0
    _allow_key_updates()
    assert flush_usage() == 1
    issued.api_key.refresh_from_db()
    assert issued.api_key.use_count == 2


# --- generating: permissions, scopes, authority ------------------------------------------------------------


def test_generating_for_yourself_needs_api_keys_generate(alice):
    with pytest.raises(PermissionDenied) as caught:
        generate_api_key(caller_of(alice), chitty_id=alice.chitty_id)
    assert caught.value.extra["permission"] == "api_keys:generate"
    assert AuditEvent.objects.filter(action="authorization.denied", actor=alice.chitty_id).exists()
    grant(alice, "*")
    issued = generate_api_key(caller_of(alice), chitty_id=alice.chitty_id, name="laptop")
    assert issued.api_key.principal == alice and issued.api_key.scopes == ["*"]
    assert issued.api_key.created_by == alice.chitty_id
    event = AuditEvent.objects.get(action="api_key.generate", target=alice.chitty_id)
    assert event.details["key_id"] == issued.api_key.key_id
    assert event.details["scopes"] == ["*"]


def test_generating_for_someone_else_needs_api_keys_manage(alice, bob):
    grant(alice, "api_keys:generate")
    with pytest.raises(PermissionDenied) as caught:
        generate_api_key(caller_of(alice), chitty_id=bob.chitty_id, scopes=[])
    assert caught.value.extra["permission"] == "api_keys:manage"
    grant(alice, "api_keys:manage")
    issued = generate_api_key(caller_of(alice), chitty_id=bob.chitty_id, scopes=[])
    assert issued.api_key.principal == bob and issued.api_key.scopes == []


def test_a_manager_cannot_mint_for_others_what_they_do_not_hold(alice, bob):
    grant(alice, "api_keys:manage")
    grant(alice, "docs:read")
    grant(bob, "*")
    with pytest.raises(PermissionDenied) as caught:
        generate_api_key(caller_of(alice), chitty_id=bob.chitty_id)
    assert caught.value.code == "ESCALATION_REFUSED" and caught.value.extra["scope"] == "*"
    with pytest.raises(PermissionDenied) as caught:
        generate_api_key(caller_of(alice), chitty_id=bob.chitty_id, scopes=["docs:write"])
    assert caught.value.code == "ESCALATION_REFUSED"
    assert AuditEvent.objects.filter(action="api_key.generate", outcome="denied").count() == 2
    assert not ApiKey.objects.exists()
    issued = generate_api_key(caller_of(alice), chitty_id=bob.chitty_id, scopes=["docs:read"])
    assert issued.api_key.scopes == ["docs:read"]


def test_a_read_scoped_key_cannot_mint_a_wider_key(alice):
    grant(alice, "*")
    read_key = issue(alice, scopes=["read"])
    assert read_key.api_key.scopes == ["*:read"]
    reader = caller_from(verify_api_key(read_key.secret))
    with pytest.raises(PermissionDenied) as caught:
        generate_api_key(reader, chitty_id=alice.chitty_id, scopes=["read"])
    assert caught.value.extra["permission"] == "api_keys:generate"

    minting_reader = caller_from(verify_api_key(issue(alice, scopes=["read", "api_keys:generate"]).secret))
    for wider in (None, ["write"], ["*:*"], ["api_keys:manage"]):
        with pytest.raises(PermissionDenied) as caught:
            generate_api_key(minting_reader, chitty_id=alice.chitty_id, scopes=wider)
        assert caught.value.code == "ESCALATION_REFUSED"
    narrower = generate_api_key(minting_reader, chitty_id=alice.chitty_id, scopes=["docs:read"])
    assert narrower.api_key.scopes == ["docs:read"]


def test_explicit_scopes_must_be_covered_by_the_principals_grants(alice):
    grant(alice, "docs:read")
    with pytest.raises(ValidationFailed) as caught:
        issue(alice, scopes=["docs:read", "docs:write"])
    assert caught.value.code == "SCOPE_EXCEEDS_GRANTS" and caught.value.extra["scope"] == "docs:write"
    with pytest.raises(ValidationFailed) as caught:
        issue(alice, scopes=["read"])
    assert caught.value.code == "SCOPE_EXCEEDS_GRANTS"
    assert issue(alice, scopes=["docs:read", "docs:read"]).api_key.scopes == ["docs:read"]
    assert issue(alice).api_key.scopes == ["*"]


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"name": "x" * 201}, "INVALID_NAME"),
        ({"name": None}, "INVALID_NAME"),
        ({"environment": "prod"}, "INVALID_ENVIRONMENT"),
        ({"scopes": "read"}, "INVALID_SCOPES"),
        ({"scopes": ["read"] * 65}, "INVALID_SCOPES"),
        ({"scopes": ["Not A Scope"]}, "INVALID_SCOPE"),
        ({"scopes": [7]}, "INVALID_SCOPE"),
        ({"expires_at": datetime(2001, 1, 1, tzinfo=UTC)}, "INVALID_EXPIRY"),
        ({"expires_at": datetime(2999, 1, 1)}, "INVALID_EXPIRY"),
        ({"expires_at": "tomorrow"}, "INVALID_EXPIRY"),
    ],
)
def test_bad_generate_input_is_refused_with_a_code(alice, options, code):
    with pytest.raises(ValidationFailed) as caught:
        issue(alice, **options)
    assert caught.value.code == code
    assert not ApiKey.objects.exists()


def test_the_principal_must_be_active_and_known(alice, make_identity):
    suspended = make_identity("CHITTY-PEO-SUSP1-A", status=Identity.Status.SUSPENDED)
    for chitty_id, code in [
        (suspended.chitty_id, "IDENTITY_SUSPENDED"),
        ("CHITTY-PEO-NOBODY1-A", "CHITTY_ID_NOT_FOUND"),
        ("not-a-chitty-id", "INVALID_CHITTY_ID"),
    ]:
        with pytest.raises(ValidationFailed) as caught:
            generate_api_key(SYSTEM, chitty_id=chitty_id)
        assert caught.value.code == code
    assert not ApiKey.objects.exists()


def test_a_remote_authority_that_cannot_be_reached_means_no_key(chittyid_authority, alice):
    newcomer = "CHITTY-PEO-REMOTE1-A"
    chittyid_authority.behaviours[newcomer] = "valid"
    chittyid_authority.behaviours[alice.chitty_id] = "valid"
    chittyid_authority.down = True
    for chitty_id in (newcomer, alice.chitty_id):
        with pytest.raises(AuthorityUnavailable):
            generate_api_key(SYSTEM, chitty_id=chitty_id)
    assert not ApiKey.objects.exists()
    assert not Identity.objects.filter(chitty_id=newcomer).exists()

    chittyid_authority.down = False
    issued = generate_api_key(SYSTEM, chitty_id=newcomer)
    assert verify_api_key(issued.secret).chitty_id == newcomer


def test_a_remote_authority_that_rejects_the_principal_means_no_key(chittyid_authority, alice):
    chittyid_authority.behaviours[alice.chitty_id] = "invalid"
    with pytest.raises(ValidationFailed) as caught:
        generate_api_key(SYSTEM, chitty_id=alice.chitty_id)
    assert caught.value.code == "CHITTY_ID_REJECTED"
    assert not ApiKey.objects.exists()


# --- validate_api_key ---------------------------------------------------------------------------------------


def test_validating_your_own_key_needs_no_permission_and_is_not_audited(alice):
    issued = issue(alice)
    verification = validate_api_key(caller_of(alice, scopes=()), issued.secret)
    assert verification.valid and verification.key_id == issued.api_key.key_id
    assert not AuditEvent.objects.filter(action="api_key.validate").exists()
    flush_usage()
    issued.api_key.refresh_from_db()
    assert issued.api_key.use_count == 1


def test_validating_someone_elses_key_needs_api_keys_validate(alice, bob):
    bobs = issue(bob)
    for raw in (bobs.secret, generate_api_key_secret("live"), "garbage"):
        with pytest.raises(PermissionDenied) as caught:
            validate_api_key(caller_of(alice), raw)
        assert caught.value.extra["permission"] == "api_keys:validate"
    assert AuditEvent.objects.filter(action="authorization.denied", actor=alice.chitty_id).count() == 3
    flush_usage()
    bobs.api_key.refresh_from_db()
    assert bobs.api_key.use_count == 0

    grant(alice, "api_keys:validate")
    assert validate_api_key(caller_of(alice), bobs.secret).chitty_id == bob.chitty_id


def test_failed_validations_are_audited_with_the_prefix_only(alice, bob):
    grant(alice, "api_keys:validate")
    validator = caller_of(alice)
    bobs = issue(bob)
    revoke_api_key(SYSTEM, bobs.api_key.key_id)
    unknown = generate_api_key_secret("test")
    assert validate_api_key(validator, bobs.secret).code == "REVOKED"
    assert validate_api_key(validator, unknown).code == "NOT_FOUND"
    assert validate_api_key(validator, mistype(unknown, 30)).code == "BAD_CHECKSUM"
    assert validate_api_key(validator, "not-a-key").code == "MALFORMED"
    events = list(AuditEvent.objects.filter(action="api_key.validate").order_by("sequence"))
    assert [(e.outcome, e.details["code"]) for e in events] == [
        ("failure", "REVOKED"),
        ("failure", "NOT_FOUND"),
        ("failure", "BAD_CHECKSUM"),
        ("failure", "MALFORMED"),
    ]
    assert events[0].target == bob.chitty_id and events[0].details["key_id"] == bobs.api_key.key_id
    assert events[0].details["display_prefix"].startswith(bobs.api_key.display_prefix)
    assert events[1].details["display_prefix"].startswith(unknown[:16])
    assert events[3].details["display_prefix"] == ""


# --- revoke, rotate, list, get -------------------------------------------------------------------------------


def test_revoking_your_own_key_needs_nothing_and_is_idempotent(alice):
    issued = issue(alice)
    first = revoke_api_key(caller_of(alice, scopes=()), issued.api_key.key_id, reason="lost laptop")
    again = revoke_api_key(caller_of(alice, scopes=()), issued.api_key.key_id, reason="again")
    assert first.revoked_at is not None and again.revoked_at == first.revoked_at
    assert again.revoke_reason == "lost laptop" and again.revoked_by == alice.chitty_id
    events = AuditEvent.objects.filter(action="api_key.revoke")
    assert events.count() == 1
    assert events.get().details["key_id"] == issued.api_key.key_id


def test_revoking_someone_elses_key_needs_api_keys_manage(alice, bob):
    bobs = issue(bob)
    with pytest.raises(PermissionDenied):
        revoke_api_key(caller_of(alice), bobs.api_key.key_id)
    assert verify_api_key(bobs.secret).valid
    grant(alice, "api_keys:manage")
    revoke_api_key(caller_of(alice), bobs.api_key.key_id)
    assert verify_api_key(bobs.secret).code == "REVOKED"


@pytest.mark.parametrize("key_id", ["key_AAAAAAAAAAAAAAAAAAAA", "nonsense", None, 42])
def test_an_unknown_key_id_is_key_not_found(usage, key_id):
    for operation in (revoke_api_key, rotate_api_key, get_api_key):
        with pytest.raises(NotFound) as caught:
            operation(SYSTEM, key_id)
        assert caught.value.code == "KEY_NOT_FOUND"


def test_bad_revoke_reason_is_refused(alice):
    issued = issue(alice)
    with pytest.raises(ValidationFailed) as caught:
        revoke_api_key(SYSTEM, issued.api_key.key_id, reason="x" * 256)
    assert caught.value.code == "INVALID_REASON"


def test_rotation_keeps_settings_and_overlaps(alice, clock):
    grant(alice, "docs:read")
    expires = timezone.now() + timedelta(days=10)
    old = issue(alice, name="deploy", scopes=["docs:read"], expires_at=expires, environment="test")
    assert verify_api_key(old.secret).valid
    new = rotate_api_key(caller_of(alice), old.api_key.key_id, overlap_seconds=60)
    assert new.secret != old.secret and new.api_key.key_id != old.api_key.key_id
    assert new.api_key.rotated_from == old.api_key
    assert (new.api_key.principal, new.api_key.name, new.api_key.scopes) == (alice, "deploy", ["docs:read"])
    assert (new.api_key.expires_at, new.api_key.environment) == (expires, "test")
    assert verify_api_key(old.secret).valid
    assert verify_api_key(new.secret).valid
    clock.advance(seconds=61)
    assert verify_api_key(old.secret).code == "REVOKED"
    assert verify_api_key(new.secret).valid
    event = AuditEvent.objects.get(action="api_key.rotate")
    assert event.details["rotated_from"] == old.api_key.key_id
    assert event.details["key_id"] == new.api_key.key_id and event.details["overlap_seconds"] == 60


def test_rotation_with_no_overlap_revokes_at_once(alice):
    old = issue(alice)
    assert verify_api_key(old.secret).valid
    new = rotate_api_key(caller_of(alice), old.api_key.key_id, overlap_seconds=0)
    assert verify_api_key(old.secret).code == "REVOKED"
    assert verify_api_key(new.secret).valid


def test_rotation_overlap_defaults_to_the_setting(alice, settings):
    settings.API_KEY_ROTATION_OVERLAP_SECONDS = 30
    old = issue(alice)
    before = timezone.now()
    rotate_api_key(caller_of(alice), old.api_key.key_id)
    old.api_key.refresh_from_db()
    assert before + timedelta(seconds=30) <= old.api_key.revoked_at <= timezone.now() + timedelta(seconds=30)


@pytest.mark.parametrize("overlap", [-1, 7 * 24 * 3600 + 1, 1.5, True, "60"])
def test_bad_overlaps_are_refused(alice, overlap):
    old = issue(alice)
    with pytest.raises(ValidationFailed) as caught:
        rotate_api_key(caller_of(alice), old.api_key.key_id, overlap_seconds=overlap)
    assert caught.value.code == "INVALID_OVERLAP"
    assert ApiKey.objects.count() == 1


def test_revoking_a_key_in_its_overlap_ends_the_overlap(alice):
    old = issue(alice)
    rotate_api_key(caller_of(alice), old.api_key.key_id, overlap_seconds=3600)
    assert verify_api_key(old.secret).valid
    revoke_api_key(caller_of(alice), old.api_key.key_id)
    assert verify_api_key(old.secret).code == "REVOKED"


def test_revoked_rotated_and_expired_keys_cannot_be_rotated(alice, clock):
    rotated, revoked = issue(alice), issue(alice)
    expiring = issue(alice, expires_at=timezone.now() + timedelta(minutes=1))
    rotate_api_key(caller_of(alice), rotated.api_key.key_id, overlap_seconds=600)
    revoke_api_key(caller_of(alice), revoked.api_key.key_id)
    clock.advance(minutes=2)
    for issued, code in [
        (rotated, "KEY_ALREADY_ROTATED"),
        (revoked, "KEY_REVOKED"),
        (expiring, "KEY_EXPIRED"),
    ]:
        with pytest.raises(Conflict) as caught:
            rotate_api_key(caller_of(alice), issued.api_key.key_id)
        assert caught.value.code == code
    assert ApiKey.objects.count() == 4


def test_rotation_cannot_hand_anyone_a_wider_key(alice, bob):
    bobs = issue(bob)
    with pytest.raises(PermissionDenied):
        rotate_api_key(caller_of(alice), bobs.api_key.key_id)
    grant(alice, "api_keys:manage")
    with pytest.raises(PermissionDenied) as caught:
        rotate_api_key(caller_of(alice), bobs.api_key.key_id)
    assert caught.value.code == "ESCALATION_REFUSED"

    own = issue(alice)
    with pytest.raises(PermissionDenied) as caught:
        rotate_api_key(caller_of(alice, scopes=("*:read",)), own.api_key.key_id)
    assert caught.value.code == "ESCALATION_REFUSED"
    assert ApiKey.objects.count() == 2
    assert verify_api_key(bobs.secret).valid and verify_api_key(own.secret).valid


def test_rotation_asks_the_authority_and_fails_closed(chittyid_authority, alice, settings):
    settings.CHITTYID_CACHE_SECONDS = 0
    chittyid_authority.behaviours[alice.chitty_id] = "valid"
    old = issue(alice)
    chittyid_authority.down = True
    with pytest.raises(AuthorityUnavailable):
        rotate_api_key(caller_of(alice), old.api_key.key_id)
    assert ApiKey.objects.count() == 1
    assert verify_api_key(old.secret).valid


def test_listing_and_getting_keys(alice, bob):
    live, revoked, overlapping = issue(alice), issue(alice), issue(alice)
    revoke_api_key(SYSTEM, revoked.api_key.key_id)
    successor = rotate_api_key(SYSTEM, overlapping.api_key.key_id, overlap_seconds=600)
    bobs = issue(bob)

    mine = list_api_keys(caller_of(alice, scopes=()))
    assert {k.key_id for k in mine} == {
        live.api_key.key_id,
        overlapping.api_key.key_id,
        successor.api_key.key_id,
    }
    everything = list_api_keys(caller_of(alice), chitty_id=alice.chitty_id, include_revoked=True)
    assert len(everything) == 4
    assert [k.created_at for k in everything] == sorted((k.created_at for k in everything), reverse=True)
    assert get_api_key(caller_of(alice, scopes=()), live.api_key.key_id) == live.api_key

    with pytest.raises(PermissionDenied):
        list_api_keys(caller_of(alice), chitty_id=bob.chitty_id)
    with pytest.raises(PermissionDenied):
        get_api_key(caller_of(alice), bobs.api_key.key_id)
    grant(alice, "api_keys:manage")
    assert [k.key_id for k in list_api_keys(caller_of(alice), chitty_id=bob.chitty_id)] == [
        bobs.api_key.key_id
    ]
    assert get_api_key(caller_of(alice), bobs.api_key.key_id) == bobs.api_key


def test_listing_needs_a_principal(usage):
    with pytest.raises(ValidationFailed) as caught:
        list_api_keys(SYSTEM)
    assert caught.value.code == "CHITTY_ID_REQUIRED"
    with pytest.raises(NotFound) as caught:
        list_api_keys(SYSTEM, chitty_id="CHITTY-PEO-NOBODY1-A")
    assert caught.value.code == "IDENTITY_NOT_FOUND"


# --- no secret at rest ---------------------------------------------------------------------------------------


def _every_row_as_text() -> str:
    rows = []
    for model in apps.get_models():
        for row in model._default_manager.all().values():
            rows.append(json.dumps(row, default=str))
    return "\n".join(rows)


def test_no_secret_lands_in_any_table_or_log(alice, caplog):
    caplog.set_level(logging.DEBUG)
    grant(alice, "*")
    owner = caller_of(alice)
    first = generate_api_key(owner, chitty_id=alice.chitty_id, name="everything")
    validate_api_key(owner, first.secret)
    second = rotate_api_key(owner, first.api_key.key_id, overlap_seconds=0)
    validate_api_key(owner, first.secret)
    revoke_api_key(owner, second.api_key.key_id, reason="done")
    validate_api_key(owner, second.secret)
    validate_api_key(owner, mistype(second.secret, 40))
    verify_api_key(second.secret)
    flush_usage()

    assert AuditEvent.objects.filter(action="api_key.validate").count() == 3
    stored = _every_row_as_text()
    assert first.api_key.secret_hash in stored
    for secret in (first.secret, second.secret):
        for fragment in (secret, secret[16:], secret[16:-6], mistype(second.secret, 40)):
            assert fragment not in stored
            assert fragment not in caplog.text
