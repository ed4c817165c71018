"""The secrets scan that runs over the suite's output (tests/secret_scan.py) must see a leak where one is.

Each test plants a real credential where the service could have written it, asserts the scan names it, and
takes it away again (the scan after the test would otherwise fail this test too).
"""

import logging
import shutil

import jwt
import pytest
import redis
from django.conf import settings
from django.db import connection

from kernel.masking import mask_secret_string
from keys.checkpoints import CHECKPOINT_TYP
from keys.models import ApiKey
from keys.services import generate_api_key
from keys.tokens import generate_jwt
from tests.conftest import LOG_LINES_KEY
from tests.mcp_live import _postgres_url
from tests.secret_scan import TEST_INPUTS_MARKER, SecretScan, known_secrets

pytestmark = pytest.mark.django_db


@pytest.fixture
def scan() -> SecretScan:
    return SecretScan(known_secrets())


@pytest.fixture
def planted(tmp_path):
    """A folder for planted leaks, removed before the session's own scan of files runs."""
    folder = tmp_path / "planted"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder)


@pytest.fixture
def issued_key(make_identity, system_caller):
    identity = make_identity()
    return generate_api_key(system_caller, chitty_id=identity.chitty_id, name="scan test", scopes=["*"])


def kinds(findings) -> set[str]:
    return {finding.kind for finding in findings}


def test_a_key_or_a_jwt_in_a_log_file_is_found_and_what_we_log_instead_is_not(
    scan, issued_key, system_caller, planted
):
    token = generate_jwt(system_caller, chitty_id=issued_key.api_key.principal.chitty_id).token
    leaky = planted / "leaky.log"
    leaky.write_text(f"validated {issued_key.secret} and {token}\n")
    masked = planted / "masked.log"
    masked.write_text(
        f"{mask_secret_string(issued_key.secret)} {issued_key.api_key.key_id} {issued_key.api_key.display_prefix} "
        f"{mask_secret_string(token)}\n"
    )

    assert kinds(scan.findings_in_files([leaky])) == {"API key", "signed JWT"}
    assert scan.findings_in_files([masked]) == []


def test_an_audit_checkpoint_is_published_not_a_credential(scan, planted):
    header = {"typ": CHECKPOINT_TYP, "kid": "k1"}
    checkpoint = jwt.encode({"seq": 1, "head": "ab" * 32}, "a checkpoint test key", "HS256", headers=header)
    token = jwt.encode({"sub": "CHITTY-PEO-TEST1-A", "typ": CHECKPOINT_TYP}, "a checkpoint test key", "HS256")
    (planted / "checkpoints.log").write_text(checkpoint)
    (planted / "tokens.log").write_text(token)

    assert [finding.where for finding in scan.findings_in_files([planted])] == [str(planted / "tokens.log")]


def test_configured_secrets_and_private_keys_are_found_in_any_file(scan, planted):
    (planted / "settings.txt").write_text(f"JWT_SECRET={settings.JWT_SECRET}")
    (planted / "key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nMIGH...\n-----END PRIVATE KEY-----\n")
    (planted / "journal.sqlite3-wal").write_bytes(b"\x00\x01" + settings.SECRET_KEY.encode() + b"\xff")

    assert kinds(scan.findings_in_files([planted])) == {"JWT_SECRET", "PEM private key", "SECRET_KEY"}


def test_a_directory_of_test_inputs_is_skipped(scan, issued_key, tmp_path):
    inputs = tmp_path / "corpus"  # left in place: the session's scan skips it too
    inputs.mkdir()
    (inputs / TEST_INPUTS_MARKER).touch()
    (inputs / "seed").write_text(issued_key.secret)

    assert scan.findings_in_files([tmp_path]) == []


def test_the_log_lines_scanned_are_the_service_s_own_masked_output(scan, issued_key, pytestconfig):
    log_lines = pytestconfig.stash[LOG_LINES_KEY]
    log_lines.take()
    logging.getLogger("keys.services").warning("refused %s", issued_key.secret)

    written = log_lines.take()

    assert b"refused " + issued_key.api_key.display_prefix.encode() in written
    assert issued_key.secret.encode() not in written
    assert scan.findings_in(written, "log lines") == []


def test_a_key_stored_in_a_database_column_is_found(scan, issued_key):
    ApiKey.objects.filter(pk=issued_key.api_key.pk).update(name=issued_key.secret)

    try:
        findings = scan.findings_in_database()
    finally:
        ApiKey.objects.filter(pk=issued_key.api_key.pk).update(name="scan test")

    assert [str(finding) for finding in findings] == [
        f"API key in table {ApiKey._meta.db_table} of the test database"
    ]


def test_the_database_as_the_service_leaves_it_holds_no_secret(scan, issued_key, system_caller):
    generate_jwt(system_caller, chitty_id=issued_key.api_key.principal.chitty_id)

    assert scan.findings_in_database() == []


@pytest.mark.redis
def test_a_key_in_a_redis_value_is_found(scan, issued_key):
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set("planted", f"cached {issued_key.secret}".encode())
    try:
        assert kinds(scan.findings_in_redis(settings.REDIS_URL)) == {"API key"}
    finally:
        client.delete("planted")
        client.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_key_in_a_postgres_dump_is_found(scan, issued_key):
    """pg_dump sees committed rows only: this test commits, then cleans up."""
    ApiKey.objects.filter(pk=issued_key.api_key.pk).update(name=issued_key.secret)
    try:
        findings = scan.findings_in_postgres(_postgres_url(connection.settings_dict["NAME"]))
    finally:
        ApiKey.objects.filter(pk=issued_key.api_key.pk).update(name="scan test")

    assert kinds(findings) == {"API key"}
