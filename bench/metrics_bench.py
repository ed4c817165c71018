"""What counting metrics costs: `POST /api/v1/keys/validate` (warm, on the REST fast path) and a bearer-
authenticated no-op endpoint (through Django) on a daphne with metrics on, beside the same on a daphne with
`METRICS_ENABLED=false`, both serving one database, in one run.

    .venv/bin/python -m bench.metrics_bench [--backends sqlite] [--rounds 6] [--seconds 3] [--connections 8]
        [--write-results]

The metrics-on node runs as a production node does, with `PROMETHEUS_MULTIPROC_DIR` set (every value written to
a memory-mapped file) and scraped once a second meanwhile by a Prometheus-like poller, so the figure includes
what a scrape costs. Each round drives every endpoint on both nodes in turn with `wrk`, the order rotated round
by round; ratios are taken within a round. `--write-results` replaces the `## Metrics cost` section of
bench/RESULTS.md. Needs `wrk`.
"""

import argparse
import json
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from bench.harness import (
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
from bench.rest_bench import (
    NO_OP,
    VALIDATE,
    WARMUP_SECONDS,
    endpoints,
    post,
    run_wrk,
    wrk_arguments,
    wrk_script,
)
from bench.rest_bench import work as seed

SECTION = "Metrics cost"
DATABASE_NAME = "bench_metrics"
TARGET = 0.9
SCRAPE_INTERVAL_SECONDS = 1.0
ON, OFF = "metrics on", "metrics off"


@contextmanager
def scraped_every_second(server: BenchServer, bearer: str) -> Iterator[list[int]]:
    """Scrape `/metrics` as Prometheus would while the block runs; yields the list of scrapes made."""
    scrapes: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(
            headers={"Authorization": f"Bearer {bearer}"}, timeout=10, trust_env=False
        ) as client:
            while not stop.wait(SCRAPE_INTERVAL_SECONDS):
                response = client.get(server.url + "/metrics")
                if response.status_code != 200:
                    raise SystemExit(f"/metrics answered {response.status_code}: {response.text[:300]}")
                scrapes.append(len(response.content))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        yield scrapes
    finally:
        stop.set()
        poller.join()


def run_backend(backend: Backend, args: argparse.Namespace) -> dict[tuple[str, str], list[float]]:
    print(f"[bench] {backend.name}: seeding, starting two daphnes, {args.rounds} rounds", file=sys.stderr)
    with (
        throwaway_database(backend, DATABASE_NAME) as database_url,
        tempfile.TemporaryDirectory(prefix="chittyauth-metrics-bench-") as folder_name,
        ExitStack() as stack,
    ):
        folder = Path(folder_name)
        (folder / "metrics").mkdir()
        environment = backend_environment(backend, database_url, DB_CONN_MAX_AGE="60")
        secrets = run_worker("bench.metrics_bench", environment)
        body = json.dumps({"api_key": secrets["validated_key"]})
        targets = [endpoint for endpoint in endpoints(secrets) if endpoint.name in (VALIDATE, NO_OP)]
        scripts = {endpoint.name: wrk_script(folder, endpoint, body) for endpoint in targets}
        servers = {
            ON: stack.enter_context(
                daphne_server(
                    {
                        **environment,
                        "METRICS_ENABLED": "true",
                        "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics"),
                    },
                    folder / "daphne-on.log",
                )
            ),
            OFF: stack.enter_context(
                daphne_server({**environment, "METRICS_ENABLED": "false"}, folder / "daphne-off.log")
            ),
        }
        # The poller's own key holds `metrics:read`; the bearer in the wrk runs is the same on both nodes.
        scrapes = stack.enter_context(scraped_every_second(servers[ON], secrets["scraper"]))
        runs = [(node, endpoint) for node in servers for endpoint in targets]
        for node, endpoint in runs:
            if endpoint.name == VALIDATE and not post(servers[node].url, endpoint, body).get("valid"):
                raise SystemExit(f"{node}: the validate endpoint did not accept the key")
            run_wrk(servers[node].url, endpoint, scripts[endpoint.name], WARMUP_SECONDS, args.connections)
        throughput: dict[tuple[str, str], list[float]] = {(node, e.name): [] for node, e in runs}
        for round_number in range(args.rounds):
            shift = round_number % len(runs)
            for node, endpoint in runs[shift:] + runs[:shift]:
                throughput[node, endpoint.name].append(
                    run_wrk(
                        servers[node].url, endpoint, scripts[endpoint.name], args.seconds, args.connections
                    )
                )
        if not scrapes:
            raise SystemExit("the poller made no scrape")
    return throughput


def report(
    results: dict[str, dict[tuple[str, str], list[float]]],
    command: str,
    machine: str,
    args: argparse.Namespace,
) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        machine,
        "",
        f"Two daphne processes on one database, one with metrics on (`PROMETHEUS_MULTIPROC_DIR` set, `/metrics` "
        f"scraped every {SCRAPE_INTERVAL_SECONDS:g} s meanwhile) and one with `METRICS_ENABLED=false`; "
        f"`wrk -t1 -c{args.connections} -d{args.seconds}s` per run, {args.rounds} rounds with the order rotated; "
        "requests per second, median (range over rounds). Ratios are taken within each round.",
    ]
    for backend_name, throughput in results.items():
        lines += ["", f"### {backend_name}", "", f"| Endpoint | {ON} | {OFF} | on ÷ off | Target | Met |"]
        lines.append("| --- | ---: | ---: | --- | --- | --- |")
        for name in (VALIDATE, NO_OP):
            on, off = throughput[ON, name], throughput[OFF, name]
            ratio = Ratio.of(on, off)
            met = "yes" if ratio.median >= TARGET else "**no**"
            lines.append(
                f"| {name} | {median(on):.0f} ({min(on):.0f} to {max(on):.0f}) "
                f"| {median(off):.0f} ({min(off):.0f} to {max(off):.0f}) "
                f"| {ratio.median:.2f}x ({ratio.low:.2f} to {ratio.high:.2f}) | ≥ {TARGET:g}x | {met} |"
            )
    return "\n".join(lines) + "\n"


def work(result_file: Path) -> None:
    """Inside a worker: the REST bench's cast, and a key for the scraper."""
    seed(result_file)
    from grants.services import grant_permission
    from kernel.callers import Caller
    from keys.services import generate_api_key
    from principals.services import register_identity

    system, scraper = Caller.system("bench"), "CHITTY-PEO-BENCHSCRAPER-A"
    register_identity(system, scraper)
    grant_permission(system, grantee_chitty_id=scraper, permission="metrics:read")
    secrets = json.loads(result_file.read_text())
    secrets["scraper"] = generate_api_key(system, chitty_id=scraper, name="bench scraper").secret
    result_file.write_text(json.dumps(secrets))


def main() -> None:
    parser = bench_arguments(__doc__, backends=parse_backends("sqlite"), rounds=6)
    wrk_arguments(parser, seconds=3)
    args = parser.parse_args()
    if args.worker:
        work(args.worker)
        return
    measure_and_report("bench.metrics_bench", SECTION, args, run_backend, report)


if __name__ == "__main__":
    main()
