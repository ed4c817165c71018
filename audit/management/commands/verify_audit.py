from django.core.management.base import BaseCommand, CommandError

from audit.services import verify_chain


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exit non-zero naming the first broken link."

    def handle(self, *args, **options) -> None:
        verdict = verify_chain()
        if not verdict.intact:
            raise CommandError(
                f"Audit chain BROKEN at sequence {verdict.first_broken_sequence}: {verdict.reason} "
                f"({verdict.events_checked} events verified before it)"
            )
        self.stdout.write(
            self.style.SUCCESS(f"Audit chain intact: {verdict.events_checked} events verified.")
        )
