import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache

from identities.models import Identity
from kernel.callers import Caller
from kernel.invalidation import invalidate_everything_and_wait
from keys.usage import forget_pending_counts
from tests.chittyid_authority_server import ChittyIDAuthorityServer
from tests.secret_scan import SecretScan, ServiceLogLines, known_secrets, report

IN_CI = os.environ.get("CI") == "true"
REDIS_URL = settings.REDIS_URL  # as the pass set it: a test may point the setting at a dead server
VAR_DIR_KEY = pytest.StashKey[Path]()
SECRET_SCAN_KEY = pytest.StashKey[SecretScan]()
LOG_LINES_KEY = pytest.StashKey[ServiceLogLines]()


def pytest_configure(config) -> None:
    """Tests keep an invalidation log of their own (in a var directory that the servers they start inherit
    whole), so a `./dev run` or another test run on the same checkout cannot flush their caches. Paths Django
    settings derived from VAR_DIR when they loaded (before this hook) stay as they were: WhiteNoise serves
    STATIC_ROOT, which tests need only to exist."""
    config.stash[VAR_DIR_KEY] = var_dir = Path(tempfile.mkdtemp(prefix="chittyauth-tests-"))
    os.environ["CHITTYAUTH_VAR_DIR"] = str(var_dir)
    settings.VAR_DIR = var_dir
    (var_dir / "static").mkdir()
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
    config.stash[SECRET_SCAN_KEY] = SecretScan(known_secrets())
    config.stash[LOG_LINES_KEY] = ServiceLogLines()


def pytest_unconfigure(config) -> None:
    shutil.rmtree(config.stash[VAR_DIR_KEY], ignore_errors=True)


def pytest_collection_modifyitems(config, items) -> None:
    """PostgreSQL and Redis tests run in `./dev test`'s second pass; there, a missing server is a failure."""
    on_postgres = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    on_redis = bool(settings.REDIS_URL)
    for item in items:
        if "postgres" in item.keywords and not on_postgres:
            item.add_marker(pytest.mark.skip(reason="needs PostgreSQL: runs in ./dev test's PostgreSQL pass"))
        if "redis" in item.keywords and not on_redis:
            item.add_marker(pytest.mark.skip(reason="needs Redis: runs in ./dev test's Redis pass"))


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Staff passwords in tests need no brute-force resistance; the real hasher only slows the suite.
    OAuth client secrets keep their own hasher."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "oauth.hashers.ClientSecretHasher",
    ]


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with empty caches, Django's and the hot paths': rows a rolled-back test left in the
    per-process caches (primary keys get reused) must not leak into the next one."""
    _start_afresh()
    yield
    _start_afresh()


def _start_afresh() -> None:
    """With Redis, `cache.clear()` also resets the invalidation sequence, and the follower flushes once when it
    sees that: wait for it here, so that flush never lands in the middle of a test (bounded: a test of an
    outage must not hang). Use counts still pending from the test before are dropped: they would otherwise
    fall due a minute later and be written, queries and all, in the middle of whichever test runs then."""
    cache.clear()
    forget_pending_counts()
    invalidate_everything_and_wait(timeout=5)


@pytest.fixture(scope="session", autouse=True)
def _no_secret_in_files(request, tmp_path_factory):
    """The end of the secrets scan: every file the service and its live servers wrote, once all stopped (set up
    first among the session's fixtures, this is torn down last)."""
    roots = [request.config.stash[VAR_DIR_KEY], tmp_path_factory.getbasetemp()]
    yield
    findings = request.config.stash[SECRET_SCAN_KEY].findings_in_files(roots)
    assert not findings, report(findings)


@pytest.fixture(autouse=True)
def _no_secret_left_behind(request, _fresh_cache):
    """The secrets scan, after each test: the service's log lines, the test database (before its rollback)
    and Redis (before the cache flush). Asking for the database helper here sets it up first, so it is torn
    down after this. The log handler is (re)attached here: a django.setup() or a worker reconfigures logging."""
    uses_database = "_django_db_helper" in request.fixturenames or request.node.get_closest_marker(
        "django_db"
    )
    if uses_database:
        request.getfixturevalue("_django_db_helper")
    log_lines = request.config.stash[LOG_LINES_KEY]
    if log_lines not in (root := logging.getLogger()).handlers:
        root.addHandler(log_lines)
    yield
    scan = request.config.stash[SECRET_SCAN_KEY]
    findings = scan.findings_in(log_lines.take(), "the service's log lines")
    if uses_database:
        findings += scan.findings_in_database()
    if REDIS_URL:
        findings += scan.findings_in_redis(REDIS_URL)
    assert not findings, report(findings)


@pytest.fixture
def make_identity(db):
    counter = iter(range(1, 10_000))

    def make(chitty_id: str | None = None, **fields) -> Identity:
        chitty_id = chitty_id or f"CHITTY-PEO-TEST{next(counter)}-A"
        fields.setdefault(
            "entity_type", chitty_id.split("-")[1] if chitty_id.startswith("CHITTY-") else "PEO"
        )
        return Identity.objects.create(chitty_id=chitty_id, **fields)

    return make


@pytest.fixture
def system_caller() -> Caller:
    return Caller.system("tests")


@pytest.fixture
def chittyid_authority(settings):
    """A loopback ChittyID authority, configured as the service's remote authority for the test."""
    server = ChittyIDAuthorityServer().start()
    settings.CHITTYID_ENDPOINT = server.url
    settings.CHITTYID_API_KEY = server.api_key
    settings.CHITTYID_TIMEOUT_SECONDS = 0.5
    settings.CHITTYID_RETRIES = 1
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
