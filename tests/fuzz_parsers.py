"""Run one fuzz target: `python -m tests.fuzz_parsers TARGET [libFuzzer arguments] [corpus directories]`, e.g.
`.venv/bin/python -m tests.fuzz_parsers chitty_id -max_total_time=600 tests/fuzz_corpus/chitty_id` for a long
run on demand. A crash is written as `crash-<sha1>`; copy it into `tests/fuzz_corpus/<target>/` so the suite
replays it from then on."""

import os
import sys
import tempfile

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
    from tests.fuzz_targets import TARGETS

    atheris.Setup([sys.argv[0], *arguments], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
