"""A terminal progress bar for the job commands: drawn only when stderr is a terminal, so logs and pipes
get just the summary."""

import sys

from tqdm import tqdm


class TerminalProgress:
    """Draws one bar per stage of a job (the `jobs.services.Progress` protocol)."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def stage(self, description: str, total: int) -> None:
        self.close()
        self._bar = tqdm(
            total=total, desc=description, unit="row", file=sys.stderr, disable=not sys.stderr.isatty()
        )

    def advance(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "TerminalProgress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
