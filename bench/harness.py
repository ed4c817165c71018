"""What both benchmark scripts share: the backends they run on, throwaway databases, worker processes,
interleaved timing, medians, and the sections of RESULTS.md they own.

Settings are read once per process, so each backend (SQLite or PostgreSQL, with or without Redis) is
measured in its own worker process started with that backend's environment; the parent only orchestrates.
The machine is shared and noisy: contenders are interleaved round by round, order rotated each round,
and every figure is a median; ratios are taken within a round, then the median of those is reported.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import django
import httpx
import psycopg
from psycopg import sql

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_FILE = BENCH_DIR / "RESULTS.md"
RESULTS_TITLE = "# Benchmark results"
POSTGRES_SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")


@dataclass(frozen=True)
class Backend:
    """One configuration to measure on: the embedded database or PostgreSQL, with or without Redis."""

    name: str
    database: str
    redis: bool


BACKENDS = {
    backend.name: backend
    for backend in (
        Backend("sqlite", "sqlite", redis=False),
        Backend("sqlite+redis", "sqlite", redis=True),
        Backend("postgres", "postgres", redis=False),
        Backend("postgres+redis", "postgres", redis=True),
    )
}


def parse_backends(value: str) -> list[Backend]:
    """`--backends sqlite,postgres+redis` (argparse type)."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown or not names:
        raise ValueError(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")
    return [BACKENDS[name] for name in names]


def bench_arguments(description: str, *, backends: list[Backend], rounds: int) -> argparse.ArgumentParser:
    """The options every bench with backends takes, and the hidden `--worker` its own processes are started
    with; each bench adds its own."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", type=parse_backends, default=backends)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument(
        "--write-results", action="store_true", help="replace our section of bench/RESULTS.md"
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    return parser


@contextmanager
def throwaway_database(backend: Backend, name: str) -> Iterator[str]:
    """The URL of a new, empty database for one worker; removed afterwards, whatever happens."""
    if backend.database == "sqlite":
        folder = tempfile.mkdtemp(prefix=f"{name}-")
        try:
            yield f"sqlite:///{folder}/bench.sqlite3"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    _drop_and_create_postgres_database(name, create=True)
    try:
        yield f"{POSTGRES_SERVER_URL}/{name}"
    finally:
        _drop_and_create_postgres_database(name, create=False)


def _drop_and_create_postgres_database(name: str, *, create: bool) -> None:
    with psycopg.connect(f"{POSTGRES_SERVER_URL}/postgres", autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if create:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def backend_environment(backend: Backend, database_url: str, **extra: str) -> dict[str, str]:
    """The environment a worker (or server) for `backend` runs with: bench settings, its database and cache."""
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    environment.pop("REDIS_URL", None)
    if backend.redis:
        environment["REDIS_URL"] = BENCH_REDIS_URL
    return environment


def run_worker(module: str, environment: dict[str, str], *args: str) -> dict:
    """Run `python -m module --worker RESULT_FILE ...` and return the JSON it left in RESULT_FILE."""
    with tempfile.TemporaryDirectory(prefix="chittyauth-bench-") as folder:
        result_file = Path(folder) / "result.json"
        subprocess.run(
            [sys.executable, "-m", module, "--worker", str(result_file), *args],
            cwd=ROOT,
            env=environment,
            check=True,
        )
        return json.loads(result_file.read_text())


def interleaved(
    contenders: dict[str, Callable[[object], object]],
    inputs: Callable[[str, int], Sequence[object]],
    rounds: int,
) -> dict[str, list[float]]:
    """Nanoseconds per call of each contender, one batch per round over `inputs(name, round)`.

    The contenders take turns within every round, in an order rotated each round, so load on the shared
    machine lands on all of them alike.
    """
    names = list(contenders)
    per_call: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            call, batch = contenders[name], inputs(name, round_number)
            started = time.perf_counter_ns()
            for item in batch:
                call(item)
            per_call[name].append((time.perf_counter_ns() - started) / len(batch))
    return per_call


def interleaved_cold(
    contenders: dict[str, tuple[Callable[[], None], Callable[[], object]]],
    rounds: int,
    calls_per_round: int,
) -> dict[str, list[float]]:
    """Median nanoseconds per round of single calls each made right after its untimed reset.

    `contenders` maps a name to (reset, call); the contenders alternate call by call.
    """
    names = list(contenders)
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(rounds):
        samples: dict[str, list[int]] = {name: [] for name in names}
        for call_number in range(calls_per_round):
            shift = (round_number + call_number) % len(names)
            for name in names[shift:] + names[:shift]:
                reset, call = contenders[name]
                reset()
                started = time.perf_counter_ns()
                call()
                samples[name].append(time.perf_counter_ns() - started)
        for name in names:
            per_round[name].append(statistics.median(samples[name]))
    return per_round


@dataclass(frozen=True)
class Ratio:
    """`numerator / denominator` per round: the median and the range across rounds."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, numerator: Sequence[float], denominator: Sequence[float]) -> "Ratio":
        ratios = [top / bottom for top, bottom in zip(numerator, denominator, strict=True)]
        return cls(statistics.median(ratios), min(ratios), max(ratios))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def format_duration(nanoseconds: float) -> str:
    if nanoseconds >= 1_000_000:
        return f"{nanoseconds / 1_000_000:.2f} ms"
    return f"{nanoseconds / 1000:.1f} µs"


def machine_summary() -> str:
    """When and on what the figures were taken, so a reader can judge the noise."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · {os.cpu_count()} CPUs · load average at start {load} · "
        f"Python {sys.version.split()[0]} · Django {django.get_version()}"
    )


def measure_and_report(
    module: str,
    section: str,
    args: argparse.Namespace,
    run_backend: Callable[[Backend, argparse.Namespace], object],
    report: Callable[[dict, str, str, argparse.Namespace], str],
) -> None:
    """Every bench's main step: measure each backend, print the report, and with `--write-results` replace the
    bench's section of RESULTS.md."""
    command = " ".join([f".venv/bin/python -m {module}", *sys.argv[1:]])
    machine = machine_summary()
    results = {backend.name: run_backend(backend, args) for backend in args.backends}
    text = report(results, command, machine, args)
    print(text)
    if args.write_results:
        write_results_section(section, text)


def write_results_section(heading: str, body: str) -> None:
    """Replace the `## heading` section of RESULTS.md (or append it); every other section is left as it is."""
    marker = f"## {heading}"
    text = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else f"{RESULTS_TITLE}\n"
    lines = text.splitlines()
    section = [marker, "", *body.strip("\n").splitlines(), ""]
    if marker in lines:
        start = lines.index(marker)
        end = next(
            (index for index in range(start + 1, len(lines)) if lines[index].startswith("## ")), len(lines)
        )
        lines[start:end] = section
    else:
        if lines and lines[-1].strip():
            lines.append("")
        lines.extend(section)
    RESULTS_FILE.write_text("\n".join(lines).rstrip("\n") + "\n")


def seed_validation_cast(
    caller: str, key_owner: str, *, caller_scopes: list[str] | None = None
) -> dict[str, str]:
    """Inside a worker process: migrate, then `caller` holding `api_keys:validate` with a key (scoped as
    given) and `key_owner` with a key for it to validate. Returns the two secrets as `bearer` and
    `validated_key`; they go back to the parent only."""
    django.setup()
    from django.core.cache import cache
    from django.core.management import call_command

    from grants.services import grant_permission
    from kernel.callers import Caller
    from keys.services import generate_api_key
    from principals.services import register_identity

    call_command("migrate", interactive=False, verbosity=0)
    cache.clear()
    system = Caller.system("bench")
    for chitty_id in (caller, key_owner):
        register_identity(system, chitty_id)
    grant_permission(system, grantee_chitty_id=caller, permission="api_keys:validate")
    return {
        "bearer": generate_api_key(
            system, chitty_id=caller, name="bench caller", scopes=caller_scopes
        ).secret,
        "validated_key": generate_api_key(system, chitty_id=key_owner, name="bench validated").secret,
    }


SERVER_START_SECONDS = 60
SERVER_STOP_SECONDS = 15


@dataclass(frozen=True)
class BenchServer:
    """A daphne the bench started: where it answers, and its pid (for CPU accounting)."""

    url: str
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def daphne_server(environment: dict[str, str], log_file: Path) -> Iterator[BenchServer]:
    """One daphne process on a free loopback port, in its own process group: SIGTERM when done, then SIGKILL
    to the whole group if it has not exited in time."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_file.open("wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                *("-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0"),
                "chittyauth_site.asgi:application",
            ],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_until_healthy(url, server, log_file)
        yield BenchServer(url, server.pid)
    except BaseException:
        print(f"daphne's log ends:\n{log_file.read_text(errors='replace')[-4000:]}", file=sys.stderr)
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=SERVER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            print("[bench] daphne ignored SIGTERM; killing its process group", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=SERVER_STOP_SECONDS)


def _wait_until_healthy(url: str, server: subprocess.Popen, log_file: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"daphne exited with {server.returncode}:\n{log_file.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"daphne did not become healthy within {SERVER_START_SECONDS}s")
