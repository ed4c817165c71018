from django.core.management.base import BaseCommand

from jobs.progress import TerminalProgress
from jobs.services import run_cleanup
from kernel.callers import Caller


class Command(BaseCommand):
    help = (
        "End expired and idle sessions and purge what the retention allows, as the scheduled cleanup does. "
        "Safe to run while the scheduled one runs."
    )

    def handle(self, *args, **options) -> None:
        with TerminalProgress() as progress:
            report = run_cleanup(Caller.system("cleanup-command"), progress=progress)
        self.stdout.write(report.summary())
