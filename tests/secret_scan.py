"""The secrets scan: nothing the service wrote while the suite ran holds a credential in plain text.

What is read: at the end of every test, the log lines the service wrote in the test process, the test
database and Redis (before the rollback and the cache flush would hide what the test left); every PostgreSQL
database a live server used (its `pg_dump`, before it is dropped); and at the end of the session every file
under the suite's var directory and pytest's temporary directory: daphne and worker logs, SQLite databases and
their journals, the file broker's messages, audit sink files.

What counts as a leak: anything shaped like one of our API keys or a signed JWT, a PEM private key, and the
configured secrets themselves (SECRET_KEY, JWT_SECRET, the signing-key encryption keys, the authority's
bearer). A finding names where it was and what kind it is, never the secret.

Inputs the tests themselves wrote (a fuzzer's corpus, say) are not the service's output: a directory holding
a file named TEST_INPUTS_MARKER is skipped.
"""

import base64
import json
import logging
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

from chittyauth_site.log_records import ConsoleHandler
from keys.checkpoints import CHECKPOINT_TYP
from keys.key_format import CHECKSUM_LENGTH, RANDOM_LENGTH
from keys.signing_keys import encryption_keys
from tests.chittyid_authority_server import AUTHORITY_API_KEY

TEST_INPUTS_MARKER = ".test-inputs"
SHORTEST_KNOWN_SECRET = 16
_SHAPES = {
    "API key": rb"chitty_(?:live|test)_[0-9A-Za-z]{%d}(?![0-9A-Za-z])" % (RANDOM_LENGTH + CHECKSUM_LENGTH),
    "signed JWT": rb"eyJ[\w-]{10,}\.eyJ[\w-]{10,}\.[\w-]{20,}",
    "PEM private key": rb"-----BEGIN [A-Z ]*PRIVATE KEY-----",
}


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str

    def __str__(self) -> str:
        return f"{self.kind} in {self.where}"


def known_secrets() -> dict[str, str]:
    """The configured secrets, by name, as the service in this test process and the live servers it starts
    see them."""
    named = {
        "SECRET_KEY": settings.SECRET_KEY,
        "JWT_SECRET": settings.JWT_SECRET,
        "CHITTYID_API_KEY": settings.CHITTYID_API_KEY,
        "the loopback authority's bearer": AUTHORITY_API_KEY,
    }
    named.update({f"signing-key encryption key {n}": key for n, key in enumerate(encryption_keys(), 1)})
    return {name: value for name, value in named.items() if value and len(value) >= SHORTEST_KNOWN_SECRET}


class SecretScan:
    def __init__(self, known: dict[str, str]) -> None:
        shapes = {kind: re.compile(pattern) for kind, pattern in _SHAPES.items()}
        exact = {name: re.compile(re.escape(value.encode())) for name, value in known.items()}
        self._patterns = {**shapes, **exact}

    def findings_in(self, data: bytes, where: str) -> list[Finding]:
        return [
            Finding(where, kind)
            for kind, pattern in self._patterns.items()
            if any(not _published(kind, found.group()) for found in pattern.finditer(data))
        ]

    def findings_in_files(self, roots: Iterable[Path]) -> list[Finding]:
        findings = []
        for path in _service_files(roots):
            try:
                data = path.read_bytes()
            except OSError:
                continue  # a socket, or a file a process removed as the walk reached it
            findings += self.findings_in(data, str(path))
        return findings

    def findings_in_database(self) -> list[Finding]:
        """Every row of every table of the test database, as this test left it."""
        findings = []
        with connection.cursor() as cursor:
            for table in connection.introspection.table_names(cursor):
                cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - a table name
                rows = cursor.fetchall()
                if rows:
                    findings += self.findings_in(repr(rows).encode(), f"table {table} of the test database")
        return findings

    def findings_in_redis(self, url: str) -> list[Finding]:
        client = redis.Redis.from_url(url)
        try:
            names = list(client.scan_iter(count=1000))
            if not names:
                return []
            pipeline = client.pipeline(transaction=False)
            for name in names:
                pipeline.dump(name)
            values = pipeline.execute()
        finally:
            client.close()
        findings = []
        for name, value in zip(names, values, strict=True):
            findings += self.findings_in(name + b"\0" + (value or b""), f"Redis key {name[:60]!r} at {url}")
        return findings

    def findings_in_postgres(self, database_url: str) -> list[Finding]:
        """What `pg_dump` of a live server's database holds: every table, sequence and large object."""
        dump = subprocess.run(
            ["pg_dump", "--no-owner", "--no-privileges", database_url],
            capture_output=True,
            check=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        ).stdout
        return self.findings_in(dump, f"pg_dump of {database_url.rsplit('/', 1)[-1]}")


class ServiceLogLines(logging.Handler):
    """The lines the service's console handler writes in this test process (its formatter and filters, so
    its masking), kept for the scan at the end of each test."""

    def __init__(self) -> None:
        console = next(h for h in logging.getLogger().handlers if isinstance(h, ConsoleHandler))
        super().__init__(console.level)
        self.setFormatter(console.formatter)
        self.filters = list(console.filters)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def take(self) -> bytes:
        taken, self.lines = self.lines, []
        return "\n".join(taken).encode()


def _published(kind: str, found: bytes) -> bool:
    """An audit checkpoint is a JWS made to be handed out (and never passes as an access token)."""
    if kind != "signed JWT":
        return False
    header = found.split(b".", 1)[0]
    try:
        return (
            json.loads(base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4))).get("typ")
            == CHECKPOINT_TYP
        )
    except (ValueError, AttributeError):
        return False


def _service_files(roots: Iterable[Path]) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        for folder, subfolders, files in os.walk(root):
            if TEST_INPUTS_MARKER in files:
                subfolders.clear()
                continue
            for name in files:
                path = Path(folder, name)
                if path.is_file() and not path.is_symlink():
                    yield path


def assert_no_secrets_in_postgres(database_url: str) -> None:
    """For a live server's database, before it is dropped."""
    findings = SecretScan(known_secrets()).findings_in_postgres(database_url)
    assert not findings, report(findings)


def report(findings: list[Finding]) -> str:
    lines = [f"  - {finding}" for finding in findings]
    return "secrets in plain text in what the service wrote:\n" + "\n".join(lines)
