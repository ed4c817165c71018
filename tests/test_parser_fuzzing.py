"""Coverage-guided fuzzing (atheris, libFuzzer) of every parser that takes outside input: a few seconds per
target (FUZZ_SECONDS, 4 by default), starting from the committed corpus in `tests/fuzz_corpus/<target>/`, which
is replayed in full first and also keeps every crash ever found as a regression input. What each target checks
is in `tests/fuzz_targets.py`; a longer run on demand is described in `tests/fuzz_parsers.py`."""

import os
import shutil
import subprocess
import sys

import pytest
from django.conf import settings

from kernel.masking import API_KEY_PATTERN, JWT_PATTERN
from tests.fuzz_targets import TARGETS
from tests.mcp_live import REPO_ROOT
from tests.secret_scan import TEST_INPUTS_MARKER

CORPUS = REPO_ROOT / "tests" / "fuzz_corpus"
SECONDS = os.environ.get("FUZZ_SECONDS", "4")

pytestmark = pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="the parsers touch no shared service: fuzzed once, in ./dev test's embedded pass",
)


def test_every_target_has_a_committed_corpus_and_none_of_it_looks_like_a_credential():
    assert sorted(path.name for path in CORPUS.iterdir()) == sorted(TARGETS)
    for target in TARGETS:
        assert any((CORPUS / target).iterdir()), f"tests/fuzz_corpus/{target} is empty"
    shaped_like_credentials = [
        str(path.relative_to(CORPUS))
        for path in CORPUS.glob("*/*")
        if API_KEY_PATTERN.search(text := path.read_bytes().decode("utf-8", errors="replace"))
        or JWT_PATTERN.search(text)
    ]
    assert not shaped_like_credentials, (
        "credential-shaped seeds are made per run (fuzz_targets.credential_seeds)"
    )


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzzing_finds_nothing_that_crashes_a_parser(target, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS / target, corpus)  # what the run adds stays out of the checkout
    (corpus / TEST_INPUTS_MARKER).touch()  # the fuzzer's inputs, not the service's output
    environment = {
        name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz_parsers",
            target,
            f"-max_total_time={SECONDS}",
            "-seed=20261207",
            "-max_len=1024",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    crashes = sorted(path.name for path in tmp_path.glob("crash-*"))
    assert result.returncode == 0 and not crashes, (
        f"{target} crashed; copy {crashes} into tests/fuzz_corpus/{target}/ as a regression input:\n"
        f"{result.stderr[-6000:]}"
    )
