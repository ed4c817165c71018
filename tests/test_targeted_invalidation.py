"""Each kind of security change is seen on the very next validation, on this node and on another, and leaves
every unrelated warm entry warm: answered with no database query.

"Another node" is a separate Python process making the change against the same database; this test process
hears it over Redis (the PostgreSQL + Redis pass) the way a second daphne node would."""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from grants.checks import check_permission
from grants.services import grant_permission, revoke_grant
from identities.models import Identity
from kernel.callers import Caller
from keys.services import generate_api_key, revoke_api_key, rotate_api_key, verify_api_key
from keys.signing_keys import rotate_signing_key
from keys.tokens import generate_jwt, revoke_jwt, verify_jwt
from principals.services import suspend_identity
from sessions.models import AuthSession
from sessions.services import end_session, open_session
from tests.mcp_live import suite_database_url

SYSTEM = Caller.system("tests")
ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB = "CHITTY-PEO-TARGETED-A", "CHITTY-PEO-TARGETED-B"


@dataclass
class Warm:
    """A principal's warm credentials and permission answers."""

    identity: Identity
    key: str
    key_id: str
    token: str
    jti: str

    def all_answer(self) -> bool:
        return (
            verify_api_key(self.key).valid
            and verify_jwt(self.token).valid
            and check_permission(self.identity, "audit:read").allowed
        )


def warmed(identity: Identity) -> Warm:
    issued_key = generate_api_key(SYSTEM, chitty_id=identity.chitty_id)
    issued_token = generate_jwt(SYSTEM, chitty_id=identity.chitty_id)
    warm = Warm(identity, issued_key.secret, issued_key.api_key.key_id, issued_token.token, issued_token.jti)
    assert warm.all_answer()
    return warm


@pytest.fixture
def cast(make_identity) -> tuple[Warm, Warm]:
    principals = []
    for chitty_id in (ALICE, BOB):
        identity = make_identity(chitty_id)
        grant_permission(SYSTEM, grantee_chitty_id=chitty_id, permission="audit:read")
        principals.append(identity)
    return warmed(principals[0]), warmed(principals[1])


def assert_still_warm(*warm: Warm) -> None:
    """Unrelated entries are answered from memory: not one query."""
    with CaptureQueriesContext(connection) as queries:
        assert all(entry.all_answer() for entry in warm)
    assert len(queries) == 0, f"{len(queries)} queries for entries no change touched: " + "; ".join(
        query["sql"][:120] for query in queries
    )


# Each change: what it does to alice (here, by service call), and what must be seen next.
def revoke_key(alice: Warm) -> Callable[[], bool]:
    revoke_api_key(SYSTEM, alice.key_id)
    return lambda: verify_api_key(alice.key).code == "REVOKED"


def revoke_token(alice: Warm) -> Callable[[], bool]:
    revoke_jwt(SYSTEM, jti=alice.jti)
    return lambda: verify_jwt(alice.token).code == "REVOKED"


def suspend(alice: Warm) -> Callable[[], bool]:
    suspend_identity(SYSTEM, alice.identity, reason="compromised")
    return lambda: (
        verify_api_key(alice.key).code == "IDENTITY_SUSPENDED"
        and verify_jwt(alice.token).code == "IDENTITY_SUSPENDED"
        and not check_permission(alice.identity, "audit:read").allowed
    )


def revoke_alices_grant(alice: Warm) -> Callable[[], bool]:
    grant = alice.identity.grants.get(permission="audit:read")
    revoke_grant(SYSTEM, grant.pk)
    return lambda: not check_permission(alice.identity, "audit:read").allowed


def grant_alice_more(alice: Warm) -> Callable[[], bool]:
    grant_permission(SYSTEM, grantee_chitty_id=alice.identity.chitty_id, permission="sessions:read")
    return lambda: check_permission(alice.identity, "sessions:read").allowed


CHANGES = [revoke_key, revoke_token, suspend, revoke_alices_grant, grant_alice_more]


@pytest.mark.parametrize("change", CHANGES, ids=lambda change: change.__name__)
def test_a_change_here_is_seen_at_once_and_nothing_unrelated_goes_cold(cast, change):
    alice, bob = cast
    seen = change(alice)
    assert seen()
    assert_still_warm(bob)


def test_rotating_a_key_drops_that_key_only(cast):
    alice, bob = cast
    rotated = rotate_api_key(SYSTEM, alice.key_id, overlap_seconds=0)
    assert verify_api_key(alice.key).code == "REVOKED"
    assert verify_api_key(rotated.secret).valid
    assert_still_warm(bob)
    assert verify_jwt(alice.token).valid and check_permission(alice.identity, "audit:read").allowed


def test_ending_a_session_drops_that_session_only(cast):
    alice, bob = cast
    caller = Caller(ALICE, alice.identity, "api_key", alice.key_id, scopes=("*",))
    session = open_session(caller, "mcp-websocket")
    end_session(SYSTEM, session.session_id, reason="disconnected")
    assert AuthSession.objects.get(pk=session.pk).ended_at is not None
    assert_still_warm(alice, bob)  # the connection's own session ending invalidates nothing else


def test_rotating_the_signing_key_drops_the_tokens_of_the_retired_kid_only(cast, settings):
    _alice, bob = cast
    settings.JWT_SIGNING_ALGORITHM = "EdDSA"
    older = generate_jwt(SYSTEM, chitty_id=ALICE)
    rotate_signing_key(SYSTEM, "EdDSA")
    newer = generate_jwt(SYSTEM, chitty_id=ALICE)
    assert verify_jwt(older.token).valid and verify_jwt(newer.token).valid
    rotate_signing_key(SYSTEM, "EdDSA")  # retires newer's kid; older's was retired already
    assert verify_jwt(newer.token).valid  # still published: verifies again, from the database
    with CaptureQueriesContext(connection) as queries:
        assert verify_jwt(older.token).valid
    assert len(queries) == 0
    assert_still_warm(bob)


# --- on another node ------------------------------------------------------------------------------------------


def change_in_another_process(statement: str) -> None:
    url = suite_database_url()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "chittyauth_site.settings",
        "CHITTYAUTH_VAR_DIR": str(settings.VAR_DIR),
        "DATABASE_URL": url,
    }
    code = (
        "import django; django.setup()\n"
        "from kernel.callers import Caller\n"
        "from identities.models import Identity\n"
        "SYSTEM = Caller.system('another-node')\n" + statement
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)


ELSEWHERE = {
    "revoke_key": lambda alice: (
        f"from keys.services import revoke_api_key; revoke_api_key(SYSTEM, {alice.key_id!r})",
        lambda: verify_api_key(alice.key).code == "REVOKED",
    ),
    "revoke_token": lambda alice: (
        f"from keys.tokens import revoke_jwt; revoke_jwt(SYSTEM, jti={alice.jti!r})",
        lambda: verify_jwt(alice.token).code == "REVOKED",
    ),
    "suspend": lambda alice: (
        "from principals.services import suspend_identity; "
        f"suspend_identity(SYSTEM, Identity.objects.get(chitty_id={ALICE!r}))",
        lambda: (
            verify_api_key(alice.key).code == "IDENTITY_SUSPENDED"
            and verify_jwt(alice.token).code == "IDENTITY_SUSPENDED"
        ),
    ),
    "revoke_grant": lambda alice: (
        "from grants.services import revoke_grant; "
        f"revoke_grant(SYSTEM, {alice.identity.grants.get(permission='audit:read').pk})",
        lambda: not check_permission(alice.identity, "audit:read").allowed,
    ),
}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ELSEWHERE)
def test_a_change_on_another_node_is_seen_when_its_message_arrives_and_nothing_unrelated_goes_cold(
    cast, kind
):
    alice, bob = cast
    statement, seen = ELSEWHERE[kind](alice)
    change_in_another_process(statement)
    deadline = time.monotonic() + 3
    while not seen():
        assert time.monotonic() < deadline, "the other node's change was never seen here"
        time.sleep(0.02)
    assert_still_warm(bob)
