"""MCP throughput on daphne: the `validate_api_key` tool over one WebSocket beside MCP `ping` on the same
socket, the same tool over Streamable HTTP with the Python SDK client, and many calls in flight on one socket.

    .venv/bin/python -m bench.mcp_bench [--backends sqlite,postgres] [--rounds 7] [--calls 400]
        [--http-calls 120] [--pipelined-calls 1600] [--in-flight 64] [--write-results]

For each backend a worker migrates and seeds a throwaway database (a caller holding `api_keys:validate`, and
another principal's key for it to validate), then this script starts one daphne process (the production
server) on a free loopback port with `bench.settings` and persistent database connections
(`DB_CONN_MAX_AGE=60`). It opens one WebSocket (`/mcp/ws`, subprotocol `mcp`, raw `websockets` frames after
`initialize`) and one Streamable HTTP session (`mcp.client.streamable_http` with `ClientSession`), both kept
for the whole run, checks every answer, and measures the contenders in turn, the order rotated each round.
Counts are bounded and every wait has a timeout, so the script ends by itself; daphne's process group is
killed on the way out. `--write-results` replaces the `## MCP` section of bench/RESULTS.md.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
import websockets
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from websockets.asyncio.client import ClientConnection

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
    seed_validation_cast,
    throwaway_database,
)

SECTION = "MCP"
DATABASE_NAME = "bench_mcp"
DEFAULT_BACKENDS = "sqlite,postgres"
ANSWER_TIMEOUT_SECONDS = 30
CALLER = "CHITTY-PEO-MCPBENCHCALLER-A"
KEY_OWNER = "CHITTY-PEO-MCPBENCHOWNER-A"
TOOL = "validate_api_key"
PROTOCOL_VERSION = "2025-11-25"

WS_PING, WS_VALIDATE, HTTP_VALIDATE, WS_IN_FLIGHT = (
    "WebSocket ping",
    "WebSocket validate_api_key",
    "Streamable HTTP validate_api_key",
    "WebSocket validate_api_key, in flight",
)
# (left, right, target): each a ratio of calls per second, taken within a round.
RATIOS = ((WS_VALIDATE, WS_PING, 0.7), (WS_VALIDATE, HTTP_VALIDATE, 5.0), (WS_IN_FLIGHT, WS_VALIDATE, 1.5))


class WrongAnswer(Exception):
    """The server answered something other than what the bench expects: the figures would mean nothing."""


@dataclass(frozen=True)
class Secrets:
    bearer: str
    validated_key: str


@dataclass(frozen=True)
class Sample:
    """One contender's batch in one round: its rate, and the CPU each side spent per call (all threads)."""

    calls_per_second: float
    server_cpu_per_call: float
    client_cpu_per_call: float


# ---------------------------------------------------------------------------------------------------------
# The server


# ---------------------------------------------------------------------------------------------------------
# The clients


def _frame(request_id: int, method: str, params: dict) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def _check_ping(reply: dict, request_id: int) -> None:
    if reply.get("id") != request_id or reply.get("result") != {}:
        raise WrongAnswer(f"ping {request_id} was answered with {reply}")


def _check_validation(reply: dict, request_id: int) -> None:
    result = reply.get("result") or {}
    structured = result.get("structuredContent") or {}
    if (
        reply.get("id") != request_id
        or result.get("isError") is not False
        or structured.get("valid") is not True
    ):
        raise WrongAnswer(f"{TOOL} call {request_id} was answered with {reply}")


class WebSocketClient:
    """Raw JSON-RPC frames over one socket; request ids never repeat, so a late answer cannot pass as another's."""

    def __init__(self, ws: ClientConnection, validated_key: str) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._arguments = {"name": TOOL, "arguments": {"api_key": validated_key}}

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, url: str, secrets: Secrets) -> AsyncIterator["WebSocketClient"]:
        async with websockets.connect(
            url.replace("http://", "ws://", 1) + "/mcp/ws",
            subprotocols=["mcp"],
            additional_headers={"Authorization": f"Bearer {secrets.bearer}"},
            compression=None,
            proxy=None,
            open_timeout=ANSWER_TIMEOUT_SECONDS,
            ping_interval=None,
        ) as ws:
            if ws.subprotocol != "mcp":
                raise WrongAnswer(f"the server chose subprotocol {ws.subprotocol!r}, not 'mcp'")
            client = cls(ws, secrets.validated_key)
            await client._initialize()
            yield client

    async def _answer(self) -> dict:
        return json.loads(await asyncio.wait_for(self._ws.recv(), ANSWER_TIMEOUT_SECONDS))

    async def _initialize(self) -> None:
        await self._ws.send(
            _frame(
                0,
                "initialize",
                {
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "chittyauth-mcp-bench", "version": "1"},
                },
            )
        )
        reply = await self._answer()
        if reply.get("id") != 0 or "result" not in reply:
            raise WrongAnswer(f"initialize was answered with {reply}")
        await self._ws.send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))

    def _validation_frames(self, calls: int) -> list[tuple[int, str]]:
        return [
            (request_id, _frame(request_id, "tools/call", self._arguments))
            for request_id in itertools.islice(self._ids, calls)
        ]

    async def pings(self, calls: int) -> None:
        """`calls` pings, one after the other."""
        for request_id, frame in [(n, _frame(n, "ping", {})) for n in itertools.islice(self._ids, calls)]:
            await self._ws.send(frame)
            _check_ping(await self._answer(), request_id)

    async def validations(self, calls: int) -> None:
        """`calls` tool calls, one after the other."""
        for request_id, frame in self._validation_frames(calls):
            await self._ws.send(frame)
            _check_validation(await self._answer(), request_id)

    async def validations_in_flight(self, calls: int, depth: int) -> None:
        """`calls` tool calls with `depth` outstanding: send `depth`, then one more per answer, whose id must
        be one still outstanding (answers come in completion order)."""
        frames = iter(self._validation_frames(calls))
        outstanding: set[int] = set()
        for request_id, frame in itertools.islice(frames, depth):
            await self._ws.send(frame)
            outstanding.add(request_id)
        while outstanding:
            reply = await self._answer()
            request_id = reply.get("id")
            if request_id not in outstanding:
                raise WrongAnswer(f"an answer to no outstanding call: {reply}")
            _check_validation(reply, request_id)
            outstanding.remove(request_id)
            for next_id, frame in itertools.islice(frames, 1):
                await self._ws.send(frame)
                outstanding.add(next_id)


class StreamableHttpClient:
    """The Python SDK's client: `ClientSession` over `streamable_http_client`, one MCP session."""

    def __init__(self, session: ClientSession, validated_key: str) -> None:
        self._session = session
        self._arguments = {"api_key": validated_key}

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, url: str, secrets: Secrets) -> AsyncIterator["StreamableHttpClient"]:
        async with (
            httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {secrets.bearer}"},
                timeout=ANSWER_TIMEOUT_SECONDS,
                trust_env=False,
            ) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream, read_timeout_seconds=ANSWER_TIMEOUT_SECONDS) as session,
        ):
            await session.initialize()
            yield cls(session, secrets.validated_key)

    async def validations(self, calls: int) -> None:
        """`calls` tool calls, one after the other."""
        for _ in range(calls):
            result = await self._session.call_tool(TOOL, self._arguments)
            if result.is_error or not (result.structured_content or {}).get("valid"):
                raise WrongAnswer(f"{TOOL} over Streamable HTTP was answered with {result}")


# ---------------------------------------------------------------------------------------------------------
# Measuring


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux `/proc/<pid>/stat`, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _sample(run: Callable[[int], Awaitable[None]], calls: int, server_pid: int) -> Sample:
    server_cpu, client_cpu = _process_cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    await run(calls)
    elapsed = time.perf_counter() - started
    return Sample(
        calls / elapsed,
        (_process_cpu_seconds(server_pid) - server_cpu) / calls,
        (time.process_time() - client_cpu) / calls,
    )


async def measure(server: BenchServer, secrets: Secrets, args: argparse.Namespace) -> dict[str, list[Sample]]:
    """A sample of each contender in each round, the contenders taking turns (order rotated each round) after
    one untimed warm-up round."""
    async with (
        WebSocketClient.connected(server.url, secrets) as ws,
        StreamableHttpClient.connected(server.url, secrets) as http,
    ):
        contenders: dict[str, tuple[Callable[[int], Awaitable[None]], int]] = {
            WS_PING: (ws.pings, args.calls),
            WS_VALIDATE: (ws.validations, args.calls),
            HTTP_VALIDATE: (http.validations, args.http_calls),
            WS_IN_FLIGHT: (
                lambda calls: ws.validations_in_flight(calls, args.in_flight),
                args.pipelined_calls,
            ),
        }
        names = list(contenders)
        for run, calls in contenders.values():
            await run(max(calls // 5, args.in_flight))
        samples: dict[str, list[Sample]] = {name: [] for name in names}
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                run, calls = contenders[name]
                samples[name].append(await _sample(run, calls, server.pid))
    return samples


def run_backend(backend: Backend, args: argparse.Namespace) -> dict[str, list[Sample]]:
    print(f"[bench] {backend.name}: seeding, starting daphne, {args.rounds} rounds", file=sys.stderr)
    with (
        throwaway_database(backend, DATABASE_NAME) as database_url,
        tempfile.TemporaryDirectory(prefix="chittyauth-mcp-bench-") as folder,
    ):
        environment = backend_environment(backend, database_url, DB_CONN_MAX_AGE="60")
        secrets = Secrets(**run_worker("bench.mcp_bench", environment))
        with daphne_server(environment, Path(folder) / "daphne.log") as server:
            return asyncio.run(measure(server, secrets, args))


# ---------------------------------------------------------------------------------------------------------
# Reporting


def _microseconds(seconds: float) -> str:
    return f"{seconds * 1_000_000:.0f} µs"


def report(
    results: dict[str, dict[str, list[Sample]]], command: str, machine: str, args: argparse.Namespace
) -> str:
    end_load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        f"Command: `{command}`",
        "",
        f"{machine} · load average at end {end_load}",
        "",
        "One daphne process on loopback (`bench.settings`, `DB_CONN_MAX_AGE=60`); the client runs in the bench "
        "process on the same machine. One WebSocket (`/mcp/ws`, subprotocol `mcp`, raw `websockets` frames, "
        "no compression) and one Streamable HTTP session (the SDK's `streamable_http_client` + "
        "`ClientSession`, which also checks each result against the tool's output schema) stay open for the "
        f"whole run. `{TOOL}` validates another principal's key (the caller holds `api_keys:validate`); every "
        "answer is checked. On the socket it is a warm call, answered beside the SDK's per-request pipeline "
        "(`mcp_endpoint/warm_calls.py`), which `ping` still goes through. "
        f"Per round: {args.calls} sequential pings and as many sequential tool calls over "
        f"the socket, {args.http_calls} sequential tool calls over HTTP, and {args.pipelined_calls} tool calls "
        f"with {args.in_flight} in flight on the socket; {args.rounds} rounds after a warm-up, the order "
        "rotated each round. Calls per second, median (range over rounds); ratios are taken within each round. "
        "CPU per call is the median over rounds of the CPU time (user + system, all threads) the daphne process "
        "and the bench's client spent during the batch, divided by its calls: it shows which side a rate is "
        "bound by: daphne is one process whose Python code runs under one GIL, so calls in flight cannot go much "
        "faster than 1 ÷ its CPU per call.",
    ]
    for backend_name, samples in results.items():
        lines += [
            "",
            f"### {backend_name}",
            "",
            "| Contender | Calls/s | Time per call | Server CPU per call | Client CPU per call |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, batch in samples.items():
            rates = [sample.calls_per_second for sample in batch]
            lines.append(
                f"| {name} | {median(rates):.0f} ({min(rates):.0f} to {max(rates):.0f}) "
                f"| {_microseconds(1 / median(rates))} "
                f"| {_microseconds(median([sample.server_cpu_per_call for sample in batch]))} "
                f"| {_microseconds(median([sample.client_cpu_per_call for sample in batch]))} |"
            )
        rates_of = {name: [sample.calls_per_second for sample in batch] for name, batch in samples.items()}
        lines += ["", "| Ratio | Value | Target | Met |", "| --- | --- | --- | --- |"]
        missed = []
        for left, right, target in RATIOS:
            ratio = Ratio.of(rates_of[left], rates_of[right])
            if ratio.median < target:
                missed.append(f"{left} ÷ {right}")
            lines.append(
                f"| {left} ÷ {right} | {ratio.median:.2f}x ({ratio.low:.2f} to {ratio.high:.2f}) "
                f"| ≥ {target:g}x | {'**no**' if ratio.median < target else 'yes'} |"
            )
        verdict = f"missed: {'; '.join(missed)}" if missed else "all met"
        lines += [
            "",
            f"Targets on {backend_name}: {len(RATIOS) - len(missed)} of {len(RATIOS)} met; {verdict}.",
        ]
    return "\n".join(lines) + "\n"


def work(result_file: Path) -> None:
    """Inside a worker: a caller whose key is scoped to `api_keys:validate` (which it holds) and another
    principal's key for it to validate."""
    secrets = seed_validation_cast(CALLER, KEY_OWNER, caller_scopes=["api_keys:validate"])
    result_file.write_text(json.dumps(secrets))


def main() -> None:
    parser = bench_arguments(__doc__, backends=parse_backends(DEFAULT_BACKENDS), rounds=7)
    parser.add_argument("--calls", type=int, default=400, help="sequential calls per round over the socket")
    parser.add_argument("--http-calls", type=int, default=120, help="sequential calls per round over HTTP")
    parser.add_argument(
        "--pipelined-calls", type=int, default=1600, help="calls per round with many in flight"
    )
    parser.add_argument("--in-flight", type=int, default=64, help="calls kept outstanding on the socket")
    args = parser.parse_args()
    if args.worker:
        work(args.worker)
        return
    if min(args.rounds, args.calls, args.http_calls, args.pipelined_calls, args.in_flight) < 1:
        parser.error("--rounds and the call counts must each be at least 1")
    measure_and_report("bench.mcp_bench", SECTION, args, run_backend, report)


if __name__ == "__main__":
    main()
