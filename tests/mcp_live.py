"""Live ChittyAuth processes for the MCP tests.

A database a subprocess can see, holding a cast of principals with API keys (a copy of a SQLite file
migrated and seeded once per test process, or, in the PostgreSQL pass, a database of its own cloned from such
a template and dropped afterwards), and daphne on a free port, stopped (its process group killed if need be).
"""

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.conf import settings

from tests.chittyid_authority_server import ChittyIDAuthorityServer
from tests.conftest import free_port
from tests.secret_scan import assert_no_secrets_in_postgres

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DAPHNE = str(Path(sys.executable).parent / "daphne")
COMMAND_TIMEOUT_SECONDS = 120
READY_WITHIN_SECONDS = 60
STOP_WITHIN_SECONDS = 10

ADMIN = "CHITTY-PEO-ADMIN1-A"  # holds *
ALICE = "CHITTY-PEO-ALICE1-A"  # holds api_keys:generate and tokens:generate
BOB = "CHITTY-PEO-BOB1-A"  # holds nothing
SLOW = "CHITTY-PEO-SLOW1-A"  # holds nothing; a loopback authority can be told to answer for it slowly
CAST = (ADMIN, ALICE, BOB, SLOW)
GHOST = "CHITTY-PEO-GHOST1-A"  # well-formed, never registered

# Tool calls aimed at another principal (`{id}`), each needing a permission BOB lacks: answered alike whether
# or not the target is registered. Grant 1 is ADMIN's; no grant 999999 exists.
AIMED_TOOL_CALLS = (
    ("check_permission", {"chitty_id": "{id}", "permission": "audit:read"}, "permissions:check"),
    (
        "grant_authorization",
        {"grantee_chitty_id": "{id}", "permission": "audit:read"},
        "authorizations:grant",
    ),
    ("list_sessions", {"chitty_id": "{id}"}, "sessions:read"),
    ("list_api_keys", {"chitty_id": "{id}"}, "api_keys:manage"),
    ("generate_api_key", {"chitty_id": "{id}"}, "api_keys:manage"),
    ("generate_jwt", {"chitty_id": "{id}"}, "tokens:manage"),
)
AIMED_GRANT_IDS = (1, 999_999)

# Variables of the test process that must not leak into a live server's configuration.
_NOT_INHERITED = {
    "DATABASE_URL",
    "CHITTYID_ENDPOINT",
    "CHITTYID_API_KEY",
    "CHITTYAUTH_API_KEY",
    "ENVIRONMENT",
    "DEBUG",
    "ALLOWED_HOSTS",
}

_SEED = f"""
import json
from kernel.callers import Caller
from grants.services import grant_permission
from principals.services import register_identity
from keys.services import generate_api_key

system = Caller.system("mcp-tests")
for chitty_id in {CAST!r}:
    register_identity(system, chitty_id)
grant_permission(system, grantee_chitty_id={ADMIN!r}, permission="*")
for permission in ("api_keys:generate", "tokens:generate"):
    grant_permission(system, grantee_chitty_id={ALICE!r}, permission=permission)
keys = {{}}
for chitty_id in {CAST!r}:
    issued = generate_api_key(system, chitty_id=chitty_id, name="mcp tests", scopes=["*"])
    keys[chitty_id] = {{"key": issued.secret, "key_id": issued.api_key.key_id}}
print(json.dumps(keys))
"""


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _NOT_INHERITED}
    env.update(DATABASE_URL=database_url, PYTHONUNBUFFERED="1", **extra)
    return env


@contextlib.contextmanager
def cast_authority(slow_seconds: float) -> Iterator[ChittyIDAuthorityServer]:
    """A loopback ChittyID authority that knows the cast, answering for SLOW only after `slow_seconds`."""
    authority = ChittyIDAuthorityServer(slow_seconds=slow_seconds).start()
    authority.behaviours.update({chitty_id: "valid" for chitty_id in CAST} | {SLOW: "slow"})
    try:
        yield authority
    finally:
        authority.stop()


def authority_env(database_url: str, authority: ChittyIDAuthorityServer, **extra: str) -> dict[str, str]:
    """`base_env` for a server that asks `authority`, patiently enough for SLOW."""
    return base_env(
        database_url,
        CHITTYID_ENDPOINT=authority.url,
        CHITTYID_API_KEY=authority.api_key,
        CHITTYID_TIMEOUT_SECONDS="10",
        **extra,
    )


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py` in a subprocess; its stdout, or an AssertionError carrying its output."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _on_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _maintenance_connection() -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )


def _postgres_url(name: str) -> str:
    parts = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path=f"/{name}"))


def suite_database_url() -> str:
    """The PostgreSQL database this test process uses, for a subprocess that must see its committed rows."""
    return _postgres_url(settings.DATABASES["default"]["NAME"])


def _drop_postgres(name: str) -> None:
    with _maintenance_connection() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class _Template:
    url: str
    keys: dict[str, dict[str, str]]


_templates: list[_Template] = []


def _template() -> _Template:
    """A migrated, seeded database to copy, made once per test process: a SQLite file or a PostgreSQL template."""
    if _templates:
        return _templates[0]
    if _on_postgres():
        name = f"mcp_template_{uuid.uuid4().hex[:10]}"
        with _maintenance_connection() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        atexit.register(_drop_postgres, name)
        url = _postgres_url(name)
    else:
        folder = tempfile.mkdtemp(prefix="chittyauth-mcp-template-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        url = f"sqlite:///{folder}/template.sqlite3"
    _templates.append(_Template(url, migrated_and_seeded(base_env(url))))
    return _templates[0]


def migrated_and_seeded(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """Migrate the database `env` names and register the cast; the cast's keys (`{chitty_id: {"key",
    "key_id"}}`)."""
    manage(env, "migrate", "--noinput", "-v0")
    output = manage(env, "shell", "-v", "0", "-c", _SEED)
    return json.loads(output.strip().splitlines()[-1])


@contextlib.contextmanager
def service_database(folder: Path) -> Iterator[tuple[str, dict[str, dict[str, str]]]]:
    """A fresh copy of the seeded database for live processes: yields its DATABASE_URL and the cast's keys
    (`{chitty_id: {"key", "key_id"}}`), and removes it afterwards.

    The cast: ADMIN holds `*`, ALICE `api_keys:generate` and `tokens:generate`, BOB and SLOW nothing; each
    has an API key scoped `*`.
    """
    template = _template()
    if not _on_postgres():
        path = folder / "chittyauth.sqlite3"
        shutil.copyfile(urlsplit(template.url).path, path)
        yield f"sqlite:///{path}", template.keys
        return
    name = f"mcp_{uuid.uuid4().hex[:12]}"
    with _maintenance_connection() as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{urlsplit(template.url).path[1:]}"')
    try:
        yield _postgres_url(name), template.keys
        assert_no_secrets_in_postgres(_postgres_url(name))
    finally:
        _drop_postgres(name)


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log: Path
    env: dict[str, str]

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL to the whole process group if it does not exit in time."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_WITHIN_SECONDS)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_WITHIN_SECONDS)


def _wait_until_serving(server: LiveServer) -> None:
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"daphne exited early:\n{server.output()}"
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=5):  # noqa: S310 - loopback URL we built
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise AssertionError(f"daphne did not serve /healthz within {READY_WITHIN_SECONDS}s:\n{server.output()}")


@contextlib.contextmanager
def daphne_server(env: dict[str, str], folder: Path, port: int | None = None) -> Iterator[LiveServer]:
    """daphne serving ChittyAuth on `port` (a free loopback port if none), stopped (never leaked) on the way
    out. Pass the port when the environment must name the server's own URL."""
    port = port or free_port()
    log = folder / f"daphne-{port}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [DAPHNE, "-v", "0", "-b", "127.0.0.1", "-p", str(port), "chittyauth_site.asgi:application"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log, env)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def rest(server: LiveServer, method: str, path: str, key: str, body: dict | None = None) -> tuple[int, dict]:
    """Call the live server's REST API as `key`."""
    request = urllib.request.Request(  # noqa: S310 - loopback URL we built
        f"{server.url}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def aimed_at(arguments: dict, chitty_id: str) -> dict:
    return {name: value.replace("{id}", chitty_id) for name, value in arguments.items()}
