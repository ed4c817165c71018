"""In-process credential benchmarks: our hot paths beside the libraries and queries they replace.

    .venv/bin/python -m bench.credentials_bench [--backends sqlite,postgres] [--rounds 15] [--write-results]

For each backend (default: SQLite and PostgreSQL, each with and without Redis as the shared cache) a worker
process with `bench.settings` migrates a throwaway database, seeds it, checks that both sides of every
comparison give the same answers, then times them interleaved. The parent prints one markdown table per
backend; `--write-results` also replaces the `## Credentials (in-process)` section of bench/RESULTS.md.
"""

import json
import sys
from pathlib import Path

from bench.harness import (
    BACKENDS,
    Backend,
    backend_environment,
    bench_arguments,
    format_duration,
    machine_summary,
    run_worker,
    throwaway_database,
    write_results_section,
)

SECTION = "Credentials (in-process)"
DATABASE_NAME = "bench_credentials"
DEFAULT_ROUNDS = 15


def run_backend(backend: Backend, rounds: int) -> list[dict]:
    print(f"[bench] {backend.name}: migrating, seeding and measuring ({rounds} rounds)", file=sys.stderr)
    with throwaway_database(backend, DATABASE_NAME) as database_url:
        return run_worker(
            "bench.credentials_bench", backend_environment(backend, database_url), "--rounds", str(rounds)
        )["comparisons"]


def report(results: dict[str, list[dict]], command: str, machine: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        machine,
        "",
        "Median time per call; ratio = left ÷ right, per round, median (range over rounds).",
    ]
    for backend_name, comparisons in results.items():
        lines += [
            "",
            f"### {backend_name}",
            "",
            "| Case | Left ÷ right | Left | Right | Ratio | Target | Met |",
            "| --- | --- | ---: | ---: | --- | --- | --- |",
        ]
        for row in comparisons:
            lines.append(
                f"| {row['case']} | {row['numerator']} ÷ {row['denominator']} "
                f"| {format_duration(row['numerator_ns'])} | {format_duration(row['denominator_ns'])} "
                f"| {row['ratio']:.2f}x ({row['ratio_low']:.2f} to {row['ratio_high']:.2f}) "
                f"| {row['target']} | {'yes' if row['met'] else '**no**'} |"
            )
    return "\n".join(lines) + "\n"


def work(result_file: Path, rounds: int) -> None:
    """Inside a worker: Django is set up for this process's backend only, then the cases run."""
    import django

    django.setup()
    from django.conf import settings

    from bench import credentials_cases

    credentials_cases.prepare_database()
    fixture = credentials_cases.seed(rounds)
    comparisons = credentials_cases.measure(fixture, rounds, shared_cache_is_redis=bool(settings.REDIS_URL))
    result_file.write_text(json.dumps({"comparisons": comparisons}))


def main() -> None:
    parser = bench_arguments(__doc__, backends=list(BACKENDS.values()), rounds=DEFAULT_ROUNDS)
    args = parser.parse_args()
    if args.worker:
        work(args.worker, args.rounds)
        return
    command = " ".join([".venv/bin/python -m bench.credentials_bench", *sys.argv[1:]])
    machine = machine_summary()
    results = {backend.name: run_backend(backend, args.rounds) for backend in args.backends}
    text = report(results, command, machine)
    print(text)
    if args.write_results:
        write_results_section(SECTION, text)


if __name__ == "__main__":
    main()
