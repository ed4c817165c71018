from django.core.management.base import BaseCommand, CommandError

from jobs.progress import TerminalProgress
from jobs.services import revalidate_identities
from kernel.callers import Caller

AUTHORITY_UNAVAILABLE_EXIT_CODE = 3


class Command(BaseCommand):
    help = (
        "Ask the remote ChittyID authority about every active identity and suspend those it rejects. "
        f"Exits with {AUTHORITY_UNAVAILABLE_EXIT_CODE} when the authority cannot be reached."
    )

    def handle(self, *args, **options) -> None:
        with TerminalProgress() as progress:
            report = revalidate_identities(Caller.system("revalidation-command"), progress=progress)
        self.stdout.write(report.summary())
        if report.authority_unavailable:
            raise CommandError(report.authority_error, returncode=AUTHORITY_UNAVAILABLE_EXIT_CODE)
