"""Signed checkpoints of the audit chain: an outside party verifies one with the published JWKS, and a chain
rewritten before it (every hash recomputed, so the chain alone still verifies) no longer matches it."""

import base64
import io
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.core.management import CommandError, call_command
from django.test import Client
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from audit.services import event_hash, record, verify_chain
from grants.services import grant_permission
from jobs.schedules import CHECKPOINT_TASK
from jobs.tasks import sign_audit_checkpoint
from kernel.callers import Caller
from kernel.errors import Conflict
from keys.checkpoints import CHECKPOINT_TYP, sign_checkpoint
from keys.services import generate_api_key
from keys.tokens import generate_jwt, verify_jwt

pytestmark = pytest.mark.django_db

SYSTEM = Caller.system("tests")
AUDITOR = "CHITTY-PEO-AUDITOR-1"


def make_trail(length: int) -> None:
    for n in range(1, length + 1):
        record("test.event", actor=f"tester:{n}", target=f"thing-{n}", details={"n": n})


def head_sequence() -> int:
    return AuditChainHead.objects.get(pk=1).sequence


def verify_command(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as failure:
        verify_command(*args)
    return str(failure.value)


def rewrite_consistently(sequence: int, **changes) -> None:
    """What an intruder with database access would do: change an event, then recompute its hash, every later
    link and the head, so the chain on its own still verifies."""
    AuditEvent.objects.filter(sequence=sequence).update(**changes)
    prev_hash = AuditEvent.objects.get(sequence=sequence - 1).hash if sequence > 1 else None
    for event in AuditEvent.objects.filter(sequence__gte=sequence).order_by("sequence"):
        if prev_hash is not None:
            event.prev_hash = prev_hash
        event.hash = event_hash(event)
        AuditEvent.objects.filter(pk=event.pk).update(prev_hash=event.prev_hash, hash=event.hash)
        prev_hash = event.hash
    AuditChainHead.objects.filter(pk=1).update(hash=prev_hash)


def test_a_checkpoint_signs_the_head_and_an_outside_party_verifies_it_with_the_jwks():
    make_trail(5)

    checkpoint = sign_checkpoint(SYSTEM)

    jwks = Client().get("/.well-known/jwks.json").json()
    header = jwt.get_unverified_header(checkpoint.token)
    assert header["typ"] == CHECKPOINT_TYP
    (jwk,) = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    claims = jwt.decode(checkpoint.token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]], issuer="chittyauth")
    assert (claims["seq"], claims["hash"]) == (6, AuditEvent.objects.get(sequence=6).hash)
    # The first checkpoint creates the signing key; the checkpoint covers that event too, then records itself.
    assert [event.action for event in AuditEvent.objects.filter(sequence__gt=5).order_by("sequence")] == [
        "signing_key.create",
        "audit.checkpoint",
    ]
    event = AuditEvent.objects.get(action="audit.checkpoint")
    assert (event.details["sequence"], event.actor) == (6, "system:tests")
    assert "Audit chain intact: 7 events verified and it matches the checkpoint." in verify_command(
        "--checkpoint", checkpoint.token
    )


def test_a_chain_rewritten_before_the_checkpoint_verifies_alone_but_not_against_it():
    make_trail(6)
    checkpoint = sign_checkpoint(SYSTEM)
    make_trail(2)  # events after the checkpoint are no concern of it

    rewrite_consistently(3, actor="staff:mallory")

    assert verify_chain().intact  # the hash chain alone cannot tell
    message = refused("--checkpoint", checkpoint.token)
    assert f"BROKEN at sequence {checkpoint.sequence}" in message
    assert f"the chain up to #{checkpoint.sequence} was rewritten" in message


def test_a_checkpointed_event_cut_with_everything_after_it_is_caught():
    make_trail(4)
    checkpoint = sign_checkpoint(SYSTEM)
    kept = checkpoint.sequence - 1
    AuditEvent.objects.filter(sequence__gt=kept).delete()
    AuditChainHead.objects.filter(pk=1).update(sequence=kept, hash=AuditEvent.objects.get(sequence=kept).hash)

    assert verify_chain().intact
    assert f"event #{checkpoint.sequence} of the checkpoint" in refused("--checkpoint", checkpoint.token)


def _altered(token: str, **claims) -> str:
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**decoded, **claims}).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _signed_elsewhere(token: str) -> str:
    """The same claims and kid, signed with a key this service never held."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=header)


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: _altered(token, seq=1),
        _signed_elsewhere,
        lambda token: generate_jwt(SYSTEM, chitty_id=AUDITOR).token,  # an access token is not a checkpoint
        lambda token: "not a checkpoint",
    ],
    ids=["altered claims", "foreign signature", "access token", "garbage"],
)
def test_a_forged_or_foreign_checkpoint_is_refused_with_its_code(make_identity, settings, forge):
    settings.JWT_SIGNING_ALGORITHM = "EdDSA"
    make_identity(AUDITOR)
    make_trail(3)
    token = sign_checkpoint(SYSTEM).token

    message = refused("--checkpoint", forge(token))

    assert message.startswith("INVALID_CHECKPOINT: The checkpoint was refused")


def test_a_checkpoint_never_passes_as_an_access_token():
    make_trail(2)
    checkpoint = sign_checkpoint(SYSTEM)

    verification = verify_jwt(checkpoint.token)

    assert verification.valid is False
    assert verification.code in {"BAD_TYPE", "MISSING_CLAIM"}


def test_checkpoints_are_listed_over_rest_to_holders_of_audit_read(make_identity):
    make_identity(AUDITOR)
    make_trail(2)
    first = sign_checkpoint(SYSTEM)
    second = sign_checkpoint(SYSTEM)
    key = generate_api_key(SYSTEM, chitty_id=AUDITOR).secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    denied = client.get("/api/v1/audit/checkpoints")
    grant_permission(SYSTEM, grantee_chitty_id=AUDITOR, permission="audit:read")
    listed = client.get("/api/v1/audit/checkpoints")
    newer = client.get(f"/api/v1/audit/checkpoints?after_sequence={first.sequence}")
    bad = client.get("/api/v1/audit/checkpoints?after_sequence=minus-one")

    assert (denied.status_code, denied.json()["error"]["code"]) == (403, "PERMISSION_DENIED")
    assert [entry["token"] for entry in listed.json()["checkpoints"]] == [second.token, first.token]
    assert [entry["sequence"] for entry in newer.json()["checkpoints"]] == [second.sequence]
    assert bad.status_code == 400


def test_beat_signs_one_every_hour_through_the_task():
    task = PeriodicTask.objects.get(task=CHECKPOINT_TASK)
    assert (task.enabled, task.interval.every, task.interval.period) == (True, 60, "minutes")
    make_trail(3)

    result = sign_audit_checkpoint.apply().get()

    checkpoint = AuditCheckpoint.objects.get()
    assert result == {"sequence": 4} == {"sequence": checkpoint.sequence}  # 3 events and the key's creation
    assert checkpoint.hash == AuditEvent.objects.get(sequence=4).hash


def test_an_empty_chain_has_nothing_to_sign():
    out = io.StringIO()
    call_command("sign_audit_checkpoint", stdout=out)

    assert "nothing to sign" in out.getvalue()
    assert not AuditCheckpoint.objects.exists()
    assert head_sequence() == 0 if AuditChainHead.objects.exists() else True


def _plant_signing_key() -> tuple[str, ed25519.Ed25519PrivateKey]:
    """What an intruder with database access can do: add a signing-key row of their own."""
    from keys.models import SigningKey

    private = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(private.public_key()))
    SigningKey.objects.create(
        kid="planted-key-000000000a",
        algorithm="EdDSA",
        public_jwk={**jwk, "kid": "planted-key-000000000a"},
        private_key_encrypted="-",
        is_active=False,
    )
    return "planted-key-000000000a", private


def test_with_the_jwks_kept_outside_a_checkpoint_signed_by_a_planted_key_is_refused(tmp_path):
    make_trail(4)
    genuine = sign_checkpoint(SYSTEM)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(Client().get("/.well-known/jwks.json").content.decode())
    rewrite_consistently(2, actor="staff:mallory")
    kid, private = _plant_signing_key()
    forged = jwt.encode(
        {
            "iss": "chittyauth",
            "seq": genuine.sequence,
            "hash": AuditEvent.objects.get(sequence=genuine.sequence).hash,
            "iat": int(genuine.created_at.timestamp()),
        },
        private,
        algorithm="EdDSA",
        headers={"typ": CHECKPOINT_TYP, "kid": kid},
    )

    assert "matches the checkpoint" in verify_command(
        "--checkpoint", forged
    )  # the database's keys are fooled
    assert "not signed by one of the trusted signing keys" in refused(
        "--checkpoint", forged, "--jwks", str(jwks_file)
    )
    assert "was rewritten" in refused("--checkpoint", genuine.token, "--jwks", str(jwks_file))


def test_a_chain_rewritten_since_the_last_checkpoint_is_never_signed():
    make_trail(4)
    first = sign_checkpoint(SYSTEM)
    make_trail(2)
    rewrite_consistently(2, actor="staff:mallory")  # history the next checkpoint would otherwise vouch for

    with pytest.raises(Conflict) as refusal:
        sign_checkpoint(SYSTEM)

    assert refusal.value.code == "CHAIN_REWRITTEN"
    assert list(AuditCheckpoint.objects.values_list("pk", flat=True)) == [first.pk]
    failure = AuditEvent.objects.get(action="audit.checkpoint", outcome="failure")
    assert failure.details["since"] == first.sequence


def test_each_checkpoint_names_the_one_before_it():
    make_trail(3)
    first = sign_checkpoint(SYSTEM)
    make_trail(1)
    second = sign_checkpoint(SYSTEM)

    claims = jwt.decode(second.token, options={"verify_signature": False})
    assert claims["prev"] == {"seq": first.sequence, "hash": first.hash}
    assert "prev" not in jwt.decode(first.token, options={"verify_signature": False})
