"""Run one fuzz target: `python -m tests.fuzz_parsers TARGET [libFuzzer arguments] [corpus directories]`, e.g.
`.venv/bin/python -m tests.fuzz_parsers chitty_id -max_total_time=600 tests/fuzz_corpus/chitty_id` for a long
run on demand. A crash is written as `crash-<sha1>`; copy it into `tests/fuzz_corpus/<target>/` so the suite
replays it from then on. Seeds shaped like credentials (API keys, JWTs) are made afresh for each run, never
committed. Scratch files go under $TMPDIR."""

import os
import sys
import tempfile
from pathlib import Path

import atheris
import django
from django.core.management import call_command

OURS = ("audit", "grants", "identities", "kernel", "keys", "mcp_endpoint", "principals", "sessions")


def _django_on_a_scratch_database() -> None:
    """The JWT target looks signing keys up: a migrated SQLite file of its own, never the developer's."""
    folder = tempfile.mkdtemp(prefix="chittyauth-fuzz-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chittyauth_site.settings")
    os.environ["CHITTYAUTH_VAR_DIR"] = folder
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/fuzz.sqlite3"
    os.environ.pop("REDIS_URL", None)
    # Instrumented as they are first imported, which django.setup() does for most of our modules.
    with atheris.instrument_imports(include=list(OURS)):
        django.setup()
        import tests.fuzz_targets  # noqa: F401
    call_command("migrate", verbosity=0, interactive=False)


def main() -> None:
    name, *arguments = sys.argv[1:]
    _django_on_a_scratch_database()
    from tests.fuzz_targets import TARGETS, credential_seeds
    from tests.secret_scan import TEST_INPUTS_MARKER

    seeds = Path(tempfile.mkdtemp(prefix="chittyauth-fuzz-seeds-"))
    (seeds / TEST_INPUTS_MARKER).touch()  # the suite's secrets scan skips these credentials: they are inputs
    for number, seed in enumerate(credential_seeds().get(name, [])):
        (seeds / f"credential-{number}").write_bytes(seed)
    # Read after the corpus directories given: libFuzzer writes new inputs into the first one only.
    atheris.Setup([sys.argv[0], *arguments, str(seeds)], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
