"""The mixed workload of issue 17: many live keys validated in a Zipf-like order by concurrent clients while a
background writer makes security changes, beside cold validations, `whoami`, `permissions/check` (single and
bulk) and a djangorestframework-api-key endpoint, all in one run.

    .venv/bin/python -m bench.mixed_bench [--backends sqlite,postgres+redis] [--keys 10000] [--rounds 3]
        [--seconds 5] [--connections 8] [--rates 0,1,10,100] [--write-results]

For each backend a worker migrates and seeds a throwaway database with `--keys` principals, each holding one
live key and one grant, plus a pool of further keys that are each validated once (the cold runs). Then this
script starts the fast nodes (one daphne on SQLite; two on PostgreSQL + Redis, which then share changes over
the Redis feed) and one more daphne with `REST_FAST_PATH=0`: every request through Django, as the service
answered before the fast path. Each round, in an order rotated round by round:

- Zipf: `wrk` on every fast node at once (the connections split between them), each request validating a key
  drawn with probability ∝ 1 / rank; meanwhile a writer process grants and revokes a permission of a random
  principal and ends a session at each `--rates` figure (changes per second; the rate it reached is reported).
- Cold: keys of the pool, each validated once, on a fast node and on the Django node.
- `whoami`, `permissions/check` and the `HasAPIKey` endpoint on a fast node and the Django node, and a bulk
  check of 50 permissions on the fast node.

Any non-2xx answer or socket error aborts the bench. `--write-results` replaces the `## Mixed workload`
section of bench/RESULTS.md.
"""

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from bench.harness import (
    ROOT,
    Backend,
    BenchServer,
    Ratio,
    backend_environment,
    bench_arguments,
    daphne_server,
    measure_and_report,
    median,
    parse_backends,
    run_worker,
    throwaway_database,
)
from bench.rest_bench import WRK, wrk_arguments

SECTION = "Mixed workload"
DATABASE_NAME = "bench_mixed"
DEFAULT_BACKENDS = "sqlite,postgres+redis"
CALLER = "CHITTY-PEO-MIXCALLER-A"
KEY_OWNER = "CHITTY-PEO-MIXOWNER-A"
OWNER = "CHITTY-PEO-MIX-{number:06d}"
GRANTED = "documents:read"
CHANGED = "reports:read"
BULK_SIZE = 50
ZIPF_EXPONENT = 1.0
COLD_REQUESTS_PER_SECOND = 2_500  # a generous bound on the cold fast path, to size the pool of unseen keys
WRITER_READY_SECONDS = 60
KEY_TABLE = "keys_apikey"


@dataclass
class Run:
    """One wrk run (or several at once, one per node): throughput summed, latency the worst of them."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int


@dataclass
class Figures:
    runs: dict[str, list[Run]] = field(default_factory=dict)
    changes_per_second: dict[int, list[float]] = field(default_factory=dict)
    key_reads: dict[int, list[float]] = field(
        default_factory=dict
    )  # index reads on the key table per request
    rss_mb: dict[str, tuple[float, float]] = field(default_factory=dict)  # node → (current, peak)

    def add(self, name: str, run: Run) -> None:
        self.runs.setdefault(name, []).append(run)

    def rates(self, name: str) -> list[float]:
        return [run.requests_per_second for run in self.runs[name]]


# ---------------------------------------------------------------------------------------------------------
# wrk


def _lua_string(value: str) -> str:
    return json.dumps(value)


def zipf_script(folder: Path, name: str, bearer: str, keys: list[str]) -> Path:
    """Each request validates a key drawn with probability ∝ 1 / rank (binary search of the cumulative)."""
    weights = [1 / (rank**ZIPF_EXPONENT) for rank in range(1, len(keys) + 1)]
    total, cumulative, running = sum(weights), [], 0.0
    for weight in weights:
        running += weight
        cumulative.append(running / total)
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        f'wrk.headers["Authorization"] = {_lua_string("Bearer " + bearer)}',
        "bodies = {" + ",".join(_lua_string(json.dumps({"api_key": key})) for key in keys) + "}",
        "cumulative = {" + ",".join(f"{value:.9f}" for value in cumulative) + "}",
        "cumulative[#cumulative] = 1.0",
        "function init(args) math.randomseed(tonumber(args[1]) or 1) end",
        "function request()",
        "  local u, low, high = math.random(), 1, #cumulative",
        "  while low < high do",
        "    local middle = math.floor((low + high) / 2)",
        "    if cumulative[middle] < u then low = middle + 1 else high = middle end",
        "  end",
        "  return wrk.format(nil, nil, nil, bodies[low])",
        "end",
    ]
    return _write_script(folder, name, lines)


def sequential_script(folder: Path, name: str, bearer: str, keys: list[str]) -> Path:
    """Each request validates the next key of the pool, starting at the offset given as the script's argument,
    so no key is seen twice on any node."""
    lines = [
        'wrk.method = "POST"',
        'wrk.headers["Content-Type"] = "application/json"',
        f'wrk.headers["Authorization"] = {_lua_string("Bearer " + bearer)}',
        "bodies = {" + ",".join(_lua_string(json.dumps({"api_key": key})) for key in keys) + "}",
        "position = 0",
        "function init(args) position = tonumber(args[1]) end",
        "function request()",
        "  position = position + 1",
        "  if position > #bodies then error('the pool of unseen keys ran out') end",
        "  return wrk.format(nil, nil, nil, bodies[position])",
        "end",
    ]
    return _write_script(folder, name, lines)


def fixed_script(folder: Path, name: str, method: str, authorization: str, body: str | None) -> Path:
    lines = [f'wrk.method = "{method}"', f'wrk.headers["Authorization"] = {_lua_string(authorization)}']
    if body is not None:
        lines += ['wrk.headers["Content-Type"] = "application/json"', f"wrk.body = {_lua_string(body)}"]
    return _write_script(folder, name, lines)


def _write_script(folder: Path, name: str, lines: list[str]) -> Path:
    script = folder / f"{name}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def start_wrk(url: str, script: Path, seconds: int, connections: int, argument: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            WRK,
            *("-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency", "-s", str(script)),
            url,
            "--",
            str(argument),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish_wrk(process: subprocess.Popen, what: str) -> Run:
    output, _ = process.communicate()
    throughput = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    failures = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if process.returncode or throughput is None or total is None or failures or socket_errors:
        raise SystemExit(f"wrk run of {what} was not clean:\n{output}")
    return Run(float(throughput[1]), _latency(output, "50%"), _latency(output, "99%"), int(total[1]))


def _latency(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if match is None:
        raise SystemExit(f"wrk printed no {percentile} latency:\n{output}")
    return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match[2]]


def run_at_once(targets: list[tuple[str, Path, int]], seconds: int, connections: int, what: str) -> Run:
    """One wrk per (url, script, argument), all at once, the connections split between them."""
    each = max(1, connections // len(targets))
    processes = [start_wrk(url, script, seconds, each, argument) for url, script, argument in targets]
    runs = [finish_wrk(process, what) for process in processes]
    return Run(
        sum(run.requests_per_second for run in runs),
        max(run.p50_ms for run in runs),
        max(run.p99_ms for run in runs),
        sum(run.requests for run in runs),
    )


# ---------------------------------------------------------------------------------------------------------
# The background writer and outside observations


@contextmanager
def writer(environment: dict[str, str], rate: int, seconds: int, folder: Path) -> Iterator[list[float]]:
    """A process making `rate` security changes per second while the block runs; yields a list that holds the
    rate it reached once the block is done."""
    reached: list[float] = []
    if rate == 0:
        yield reached
        return
    ready, stop, result = (folder / name for name in ("writer.ready", "writer.stop", "writer.json"))
    for path in (ready, stop, result):
        path.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            *("-m", "bench.mixed_bench", "--writer", str(result)),
            *("--rate", str(rate), "--seconds", str(seconds), "--folder", str(folder)),
        ],
        cwd=ROOT,
        env=environment,
    )
    deadline = time.monotonic() + WRITER_READY_SECONDS
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the writer did not get ready")
        time.sleep(0.05)
    try:
        yield reached
    finally:
        stop.touch()
        if process.wait(timeout=60):
            raise SystemExit(f"the writer failed with {process.returncode}")
    reached.append(json.loads(result.read_text())["changes_per_second"])


def key_table_reads(database_url: str) -> int | None:
    """Index scans of the key table so far (PostgreSQL's statistics; None on SQLite, which keeps none)."""
    if not database_url.startswith("postgres"):
        return None
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = %s", (KEY_TABLE,)
        ).fetchone()
    return int(row[0])


def resident_megabytes(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    current = re.search(r"VmRSS:\s+(\d+) kB", status)
    peak = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(current[1]) / 1024, int(peak[1]) / 1024


def check_answers(url: str, secrets: dict, keys: list[str]) -> None:
    """Every kind of request answers 200 with the expected verdict before anything is loaded."""
    bearer = {"Authorization": f"Bearer {secrets['bearer']}"}
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        answer = client.post("/api/v1/keys/validate", json={"api_key": keys[0]}, headers=bearer)
        assert answer.status_code == 200 and answer.json()["valid"], answer.text
        answer = client.post("/api/v1/permissions/check", json=single_check(), headers=bearer)
        assert answer.status_code == 200 and answer.json()["allowed"], answer.text
        answer = client.post("/api/v1/permissions/check", json=bulk_check(), headers=bearer)
        assert answer.status_code == 200 and len(answer.json()["results"]) == BULK_SIZE, answer.text
        assert all(result["allowed"] for result in answer.json()["results"]), answer.text
        answer = client.get("/api/v1/whoami", headers=bearer)
        assert answer.status_code == 200, answer.text
        answer = client.post(
            "/bench/has-api-key", headers={"Authorization": f"Api-Key {secrets['peer_key']}"}
        )
        assert answer.status_code == 200, answer.text


def single_check() -> dict:
    return {"chitty_id": OWNER.format(number=0), "permission": GRANTED}


def bulk_check() -> dict:
    return {
        "checks": [
            {"chitty_id": OWNER.format(number=number), "permission": GRANTED} for number in range(BULK_SIZE)
        ]
    }


# ---------------------------------------------------------------------------------------------------------
# One backend


def run_backend(backend: Backend, args: argparse.Namespace) -> Figures:
    nodes_wanted = 2 if backend.redis else 1
    cold_pool = args.rounds * args.seconds * COLD_REQUESTS_PER_SECOND
    print(
        f"[bench] {backend.name}: seeding {args.keys} keys and {cold_pool} unseen ones, "
        f"{nodes_wanted} fast node(s) and a Django one, {args.rounds} rounds",
        file=sys.stderr,
    )
    figures = Figures()
    with (
        throwaway_database(backend, DATABASE_NAME) as database_url,
        tempfile.TemporaryDirectory(prefix="chittyauth-mixed-bench-") as folder_name,
        ExitStack() as servers,
    ):
        folder = Path(folder_name)
        environment = backend_environment(backend, database_url, CHITTYAUTH_VAR_DIR=str(folder / "var"))
        keys_file = folder / "keys.json"
        secrets = run_worker(
            "bench.mixed_bench",
            environment,
            "--keys",
            str(args.keys),
            "--cold-pool",
            str(cold_pool),
            "--keys-file",
            str(keys_file),
        )
        seeded = json.loads(keys_file.read_text())
        keys_file.unlink()
        bearer = secrets["bearer"]
        fast = [
            servers.enter_context(daphne_server(environment, folder / f"fast-{index}.log"))
            for index in range(nodes_wanted)
        ]
        django = servers.enter_context(
            daphne_server({**environment, "REST_FAST_PATH": "0"}, folder / "django.log")
        )
        for node in [*fast, django]:
            check_answers(node.url, secrets, seeded["zipf"])
        validate = "/api/v1/keys/validate"
        zipf = zipf_script(folder, "zipf", bearer, seeded["zipf"])
        cold = sequential_script(folder, "cold", bearer, seeded["cold"])
        check, whoami = "/api/v1/permissions/check", "/api/v1/whoami"
        fixed = {
            "permissions/check": fixed_script(
                folder, "check", "POST", f"Bearer {bearer}", json.dumps(single_check())
            ),
            "bulk": fixed_script(folder, "bulk", "POST", f"Bearer {bearer}", json.dumps(bulk_check())),
            "whoami": fixed_script(folder, "whoami", "GET", f"Bearer {bearer}", None),
            "HasAPIKey": fixed_script(folder, "hasapikey", "POST", f"Api-Key {secrets['peer_key']}", "{}"),
        }
        cold_position = 0

        def zipf_at(rate: int, round_number: int) -> None:
            with writer(environment, rate, args.seconds, folder) as reached:
                reads_before = key_table_reads(database_url)
                run = run_at_once(
                    [
                        (node.url + validate, zipf, round_number * 100 + index)
                        for index, node in enumerate(fast)
                    ],
                    args.seconds,
                    args.connections,
                    f"Zipf at {rate}/s",
                )
                reads_after = key_table_reads(database_url)
            figures.add(f"zipf@{rate}", run)
            figures.changes_per_second.setdefault(rate, []).extend(reached or [0.0])
            if reads_before is not None:
                figures.key_reads.setdefault(rate, []).append((reads_after - reads_before) / run.requests)

        def cold_on(name: str, node: BenchServer) -> None:
            nonlocal cold_position
            run = run_at_once(
                [(node.url + validate, cold, cold_position)], args.seconds, args.connections, name
            )
            cold_position += (
                run.requests + 2 * args.connections
            )  # requests in flight at the end used keys too
            figures.add(name, run)

        def fixed_on(name: str, node: BenchServer, path: str, script: str) -> None:
            figures.add(
                name, run_at_once([(node.url + path, fixed[script], 0)], args.seconds, args.connections, name)
            )

        steps = [
            *(lambda r, rate=rate: zipf_at(rate, r) for rate in args.rates),
            lambda r: cold_on("cold, fast path", fast[0]),
            lambda r: cold_on("cold, Django", django),
            lambda r: fixed_on("permissions/check, fast path", fast[0], check, "permissions/check"),
            lambda r: fixed_on("permissions/check, Django", django, check, "permissions/check"),
            lambda r: fixed_on(f"bulk check of {BULK_SIZE}, fast path", fast[0], check, "bulk"),
            lambda r: fixed_on("whoami, fast node", fast[0], whoami, "whoami"),
            lambda r: fixed_on("whoami, Django", django, whoami, "whoami"),
            lambda r: fixed_on("HasAPIKey", fast[0], "/bench/has-api-key", "HasAPIKey"),
        ]
        for node in [*fast, django]:  # warm-up: the caller's session, the hot keys, the code paths
            run_at_once([(node.url + validate, zipf, 7)], 2, args.connections, "warm-up")
        for round_number in range(args.rounds):
            print(f"[bench] {backend.name}: round {round_number + 1} of {args.rounds}", file=sys.stderr)
            shift = round_number % len(steps)
            for step in steps[shift:] + steps[:shift]:
                step(round_number)
        for index, node in enumerate(fast):
            figures.rss_mb[f"fast node {index + 1}"] = resident_megabytes(node.pid)
        figures.rss_mb["Django node"] = resident_megabytes(django.pid)
    return figures


# ---------------------------------------------------------------------------------------------------------
# The report


def _rate_cell(figures: Figures, name: str) -> str:
    values = figures.rates(name)
    return f"{median(values):.0f} ({min(values):.0f} to {max(values):.0f})"


def _latency_cell(figures: Figures, name: str) -> str:
    runs = figures.runs[name]
    return f"{median([run.p50_ms for run in runs]):.1f} / {median([run.p99_ms for run in runs]):.1f}"


def _ratio_row(figures: Figures, left: str, right: str, target: float, *, at_most: bool = False) -> str:
    ratio = Ratio.of(figures.rates(left), figures.rates(right))
    met = ratio.median <= target if at_most else ratio.median >= target
    sign = "≤" if at_most else "≥"
    return (
        f"| {left} ÷ {right} | {ratio.median:.2f}x ({ratio.low:.2f} to {ratio.high:.2f}) | {sign} {target:g}x "
        f"| {'yes' if met else '**no**'} |"
    )


def report(results: dict[str, Figures], command: str, machine: str, args: argparse.Namespace) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        machine,
        "",
        f"{args.keys:,} live keys of as many principals (each with a grant), validated on `POST /api/v1/keys/validate` "
        f"in a Zipf order (probability ∝ 1 / rank) by `wrk -t1 -c{args.connections}` per run of {args.seconds} s "
        "(split between the fast nodes, which are loaded at once), while a writer process grants and revokes a "
        "permission of a random principal and ends a session, at each change rate. SQLite runs one fast daphne; "
        "PostgreSQL + Redis two, sharing changes over the Redis feed. The Django node is one more daphne with "
        "`REST_FAST_PATH=0`: every request through Django's request machinery. Database connections are the "
        "service default (not persistent: `DB_CONN_MAX_AGE=60` under three daphnes ran PostgreSQL out of "
        "connections). Cold: each request validates a "
        "key no node has seen. Requests per second, median (range over "
        f"{args.rounds} rounds, steps in an order rotated each round); ratios within each round; latency p50 / p99 "
        "from wrk, the worst node's. Key reads: index scans of the key table per validation, from PostgreSQL's "
        "statistics (the cache misses plus the writer's own reads); SQLite keeps no such statistics.",
    ]
    for backend_name, figures in results.items():
        lines += [
            "",
            f"### {backend_name}",
            "",
            "| Run | Requests/s | p50 / p99 ms | Changes/s reached | Key reads per validation |",
        ]
        lines.append("| --- | ---: | ---: | ---: | ---: |")
        for name in figures.runs:
            reached, reads = "", ""
            if name.startswith("zipf@"):
                rate = int(name.removeprefix("zipf@"))
                reached = f"{median(figures.changes_per_second[rate]):.1f}" if rate else "0"
                if rate in figures.key_reads:
                    reads = f"{median(figures.key_reads[rate]):.4f}"
            label = f"Zipf, {name.removeprefix('zipf@')} changes/s" if name.startswith("zipf@") else name
            lines.append(
                f"| {label} | {_rate_cell(figures, name)} | {_latency_cell(figures, name)} | {reached} | {reads} |"
            )
        lines += ["", "| Ratio | Value | Target | Met |", "| --- | --- | --- | --- |"]
        if 0 in args.rates and 10 in args.rates:
            lines.append(_ratio_row(figures, "zipf@10", "zipf@0", 0.8))
        lines += [
            _ratio_row(figures, "cold, fast path", "cold, Django", 5),
            _ratio_row(figures, "permissions/check, fast path", "permissions/check, Django", 3),
            _ratio_row(figures, "permissions/check, fast path", "HasAPIKey", 2),
            _ratio_row(figures, "whoami, fast node", "whoami, Django", 3),
            _ratio_row(figures, "whoami, fast node", "HasAPIKey", 2),
            _ratio_row(
                figures,
                "permissions/check, fast path",
                f"bulk check of {BULK_SIZE}, fast path",
                5,
                at_most=True,
            ),
        ]
        rss = ", ".join(
            f"{node} {current:.0f} MB (peak {peak:.0f} MB)"
            for node, (current, peak) in figures.rss_mb.items()
        )
        lines += ["", f"Resident memory at the end: {rss}."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# Worker processes


def seed(result_file: Path, keys: int, cold_pool: int, keys_file: Path) -> None:
    """Inside a worker: the caller (validating keys and checking permissions of others), a
    djangorestframework-api-key key, and `keys + cold_pool` principals with a key each, stored exactly as
    `generate_api_key` stores them; the first `keys` principals also hold `documents:read`."""
    from bench.harness import seed_validation_cast

    secrets = seed_validation_cast(CALLER, KEY_OWNER)
    from rest_framework_api_key.models import APIKey

    from grants.models import Grant
    from grants.services import grant_permission
    from identities.models import Identity
    from kernel.callers import Caller
    from keys.key_format import display_prefix, generate_api_key_secret, generate_key_id, hash_api_key
    from keys.models import ApiKey

    grant_permission(Caller.system("bench"), grantee_chitty_id=CALLER, permission="permissions:check")
    secrets["peer_key"] = APIKey.objects.create_key(name="bench")[1]
    Identity.objects.bulk_create(
        Identity(chitty_id=OWNER.format(number=number), entity_type="PEO")
        for number in range(keys + cold_pool)
    )
    identities = list(Identity.objects.filter(chitty_id__startswith="CHITTY-PEO-MIX-").order_by("chitty_id"))
    raw = [generate_api_key_secret("live") for _ in identities]
    ApiKey.objects.bulk_create(
        ApiKey(
            key_id=generate_key_id(),
            principal=identity,
            name="bench",
            environment="live",
            secret_hash=hash_api_key(secret),
            display_prefix=display_prefix(secret),
            scopes=["*"],
            created_by="system:bench",
        )
        for identity, secret in zip(identities, raw, strict=True)
    )
    Grant.objects.bulk_create(
        Grant(principal=identity, permission=GRANTED, granted_by="system:bench")
        for identity in identities[:keys]
    )
    keys_file.write_text(json.dumps({"zipf": raw[:keys], "cold": raw[keys : keys + cold_pool]}))
    result_file.write_text(json.dumps(secrets))


def write_changes(result_file: Path, rate: int, seconds: int, folder: Path) -> None:
    """Inside a worker: grant, revoke, end a session, in turn, `rate` times a second until told to stop."""
    import django

    django.setup()
    from grants.services import grant_permission, revoke_grant
    from identities.models import Identity
    from kernel.callers import Caller
    from sessions.services import end_session, open_session

    system = Caller.system("bench-writer")
    principals = list(
        Identity.objects.filter(chitty_id__startswith="CHITTY-PEO-MIX-").order_by("chitty_id")[:10_000]
    )
    chooser = random.Random(rate)
    sessions = []
    for identity in chooser.sample(principals, min(len(principals), rate * (seconds + 10) // 3 + 1)):
        caller = Caller(
            actor=f"principal:{identity.chitty_id}",
            identity=identity,
            credential_type="api_key",
            credential_id="bench",
        )
        sessions.append(open_session(caller, "rest").session_id)
    (folder / "writer.ready").touch()
    stop, grants, changes = folder / "writer.stop", [], 0
    started = time.monotonic()
    while not stop.exists():
        due = started + changes / rate
        if (pause := due - time.monotonic()) > 0:
            time.sleep(pause)
        kind = changes % 3
        if kind == 0:
            identity = chooser.choice(principals)
            grants.append(
                grant_permission(system, grantee_chitty_id=identity.chitty_id, permission=CHANGED).pk
            )
        elif kind == 1 and grants:
            revoke_grant(system, grants.pop())
        elif sessions:
            end_session(system, sessions.pop())
        changes += 1
    result_file.write_text(json.dumps({"changes_per_second": changes / (time.monotonic() - started)}))


def main() -> None:
    parser = bench_arguments(__doc__, backends=parse_backends(DEFAULT_BACKENDS), rounds=3)
    parser.add_argument("--keys", type=int, default=10_000)
    wrk_arguments(parser, seconds=5)
    parser.add_argument(
        "--rates", type=lambda text: [int(part) for part in text.split(",")], default=[0, 1, 10, 100]
    )
    parser.add_argument("--writer", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cold-pool", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--keys-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        seed(args.worker, args.keys, args.cold_pool, args.keys_file)
        return
    if args.writer:
        write_changes(args.writer, args.rate, args.seconds, args.folder)
        return
    if not Path(WRK).exists():
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    measure_and_report("bench.mixed_bench", SECTION, args, run_backend, report)


if __name__ == "__main__":
    main()
