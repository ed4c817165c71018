"""REST throughput on daphne: `POST /api/v1/keys/validate` beside a no-op endpoint with the same bearer
authentication and an endpoint protected by djangorestframework-api-key's `HasAPIKey`. Warm validations are
answered by the REST fast path (`REST_FAST_PATH`, on by default as in production).

    .venv/bin/python -m bench.rest_bench [--backends sqlite,postgres,postgres+redis] [--rounds 4]
        [--seconds 3] [--connections 8] [--write-results]

For each backend a worker migrates and seeds a throwaway database, then this script starts one daphne
process (the production server) on a free loopback port with `bench.settings` and persistent database
connections (`DB_CONN_MAX_AGE=60`, for every endpoint alike), checks each endpoint answers 200 (and that
the key validates), and drives the three endpoints in turn with `wrk` for bounded runs, the order rotated
each round. `--write-results` replaces the `## REST throughput` section of bench/RESULTS.md.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness import (
    Backend,
    Ratio,
    backend_environment,
    bench_arguments,
    daphne_server,
    measure_and_report,
    median,
    parse_backends,
    run_worker,
    seed_validation_cast,
    throwaway_database,
)

SECTION = "REST throughput"
DATABASE_NAME = "bench_rest"
DEFAULT_BACKENDS = "sqlite,postgres,postgres+redis"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
WARMUP_SECONDS = 2
CALLER = "CHITTY-PEO-BENCHCALLER-A"
KEY_OWNER = "CHITTY-PEO-BENCHOWNER-A"
VALIDATE, NO_OP, HAS_API_KEY = "keys/validate", "no-op", "HasAPIKey"
# (left, right, target); no-op ÷ HasAPIKey shows what Django's request machinery leaves to gain, for reference.
RATIOS = ((VALIDATE, NO_OP, 0.8), (VALIDATE, HAS_API_KEY, 2.0), (NO_OP, HAS_API_KEY, None))


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    authorization: str


def endpoints(secrets: dict[str, str]) -> list[Endpoint]:
    """All three get the same JSON body (the key to validate), so requests are the same size."""
    bearer = f"Bearer {secrets['bearer']}"
    return [
        Endpoint(VALIDATE, "/api/v1/keys/validate", bearer),
        Endpoint(NO_OP, "/bench/noop", bearer),
        Endpoint(HAS_API_KEY, "/bench/has-api-key", f"Api-Key {secrets['peer_key']}"),
    ]


def post(url: str, endpoint: Endpoint, body: str) -> dict:
    """One request, to check the endpoint answers 200 before it is loaded."""
    response = httpx.post(
        url + endpoint.path,
        content=body,
        headers={"Authorization": endpoint.authorization, "Content-Type": "application/json"},
        timeout=10,
    )
    if response.status_code != 200:
        raise SystemExit(f"{endpoint.name} answered {response.status_code}: {response.text[:500]}")
    return response.json()


def wrk_script(folder: Path, endpoint: Endpoint, body: str) -> Path:
    script = folder / f"{re.sub(r'[^a-z]', '', endpoint.name.lower())}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "{endpoint.authorization}"\n'
    )
    return script


def run_wrk(url: str, endpoint: Endpoint, script: Path, seconds: int, connections: int) -> float:
    """Requests per second over one bounded run; any error or non-2xx answer invalidates the run."""
    completed = subprocess.run(
        [
            WRK,
            *("-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script)),
            url + endpoint.path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    output = completed.stdout
    throughput = re.search(r"Requests/sec:\s+([\d.]+)", output)
    failures = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if throughput is None or failures or socket_errors:
        raise SystemExit(f"wrk run against {endpoint.name} was not clean:\n{output}")
    return float(throughput[1])


def run_backend(backend: Backend, args: argparse.Namespace) -> dict[str, list[float]]:
    print(f"[bench] {backend.name}: seeding, starting daphne, {args.rounds} rounds", file=sys.stderr)
    with (
        throwaway_database(backend, DATABASE_NAME) as database_url,
        tempfile.TemporaryDirectory(prefix="chittyauth-rest-bench-") as folder,
    ):
        environment = backend_environment(backend, database_url, DB_CONN_MAX_AGE="60")
        secrets = run_worker("bench.rest_bench", environment)
        body = json.dumps({"api_key": secrets["validated_key"]})
        targets = endpoints(secrets)
        scripts = {endpoint.name: wrk_script(Path(folder), endpoint, body) for endpoint in targets}
        with daphne_server(environment, Path(folder) / "daphne.log") as server:
            url = server.url
            answers = {endpoint.name: post(url, endpoint, body) for endpoint in targets}
            if not answers[VALIDATE].get("valid"):
                raise SystemExit(f"the validate endpoint did not accept the key: {answers[VALIDATE]}")
            for endpoint in targets:
                run_wrk(url, endpoint, scripts[endpoint.name], WARMUP_SECONDS, args.connections)
            throughput: dict[str, list[float]] = {endpoint.name: [] for endpoint in targets}
            for round_number in range(args.rounds):
                shift = round_number % len(targets)
                for endpoint in targets[shift:] + targets[:shift]:
                    throughput[endpoint.name].append(
                        run_wrk(url, endpoint, scripts[endpoint.name], args.seconds, args.connections)
                    )
    return throughput


def report(
    results: dict[str, dict[str, list[float]]], command: str, machine: str, args: argparse.Namespace
) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        machine,
        "",
        f"One daphne process, `wrk -t1 -c{args.connections} -d{args.seconds}s` per run, {args.rounds} rounds "
        "with the endpoint order rotated; requests per second, median (range over rounds). "
        "Ratios are taken within each round. Once warm, keys/validate is answered by the REST fast path "
        "(`keys/fast_path.py`, before Django's request machinery); the no-op and HasAPIKey "
        "endpoints go through Django's full stack.",
    ]
    for backend_name, throughput in results.items():
        lines += [
            "",
            f"### {backend_name}",
            "",
            "| Endpoint | Requests/s |",
            "| --- | ---: |",
        ]
        for name, values in throughput.items():
            lines.append(f"| {name} | {median(values):.0f} ({min(values):.0f} to {max(values):.0f}) |")
        lines += ["", "| Ratio | Value | Target | Met |", "| --- | --- | --- | --- |"]
        for left, right, target in RATIOS:
            ratio = Ratio.of(throughput[left], throughput[right])
            verdict = "" if target is None else ("yes" if ratio.median >= target else "**no**")
            lines.append(
                f"| {left} ÷ {right} | {ratio.median:.2f}x ({ratio.low:.2f} to {ratio.high:.2f}) "
                f"| {'both through Django, for reference' if target is None else f'≥ {target:g}x'} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def work(result_file: Path) -> None:
    """Inside a worker: a caller holding `api_keys:validate`, a key of another principal for it to validate,
    and a djangorestframework-api-key key."""
    secrets = seed_validation_cast(CALLER, KEY_OWNER)
    from rest_framework_api_key.models import APIKey

    secrets["peer_key"] = APIKey.objects.create_key(name="bench")[1]
    result_file.write_text(json.dumps(secrets))


def wrk_arguments(parser: argparse.ArgumentParser, *, seconds: int) -> None:
    """The options of a bench that loads daphne with wrk."""
    parser.add_argument("--seconds", type=int, default=seconds, help="length of each wrk run")
    parser.add_argument("--connections", type=int, default=8)


def main() -> None:
    parser = bench_arguments(__doc__, backends=parse_backends(DEFAULT_BACKENDS), rounds=4)
    wrk_arguments(parser, seconds=3)
    args = parser.parse_args()
    if args.worker:
        work(args.worker)
        return
    if not Path(WRK).exists():
        raise SystemExit("wrk is needed: apt-get install -y wrk")
    measure_and_report("bench.rest_bench", SECTION, args, run_backend, report)


if __name__ == "__main__":
    main()
