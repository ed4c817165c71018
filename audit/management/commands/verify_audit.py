from django.core.management.base import BaseCommand, CommandError

from audit.services import verify_chain
from kernel.errors import ServiceError
from keys.checkpoints import verify_against_checkpoint


class Command(BaseCommand):
    help = (
        "Verify the audit trail's hash chain; exit non-zero naming the first broken link. With --checkpoint, "
        "also prove the chain was not rewritten before that signed checkpoint."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--checkpoint", help="a checkpoint token from GET /api/v1/audit/checkpoints")

    def handle(self, *args, checkpoint: str | None = None, **options) -> None:
        try:
            verdict = verify_against_checkpoint(checkpoint.strip()) if checkpoint else verify_chain()
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        if not verdict.intact:
            raise CommandError(
                f"Audit chain BROKEN at sequence {verdict.first_broken_sequence}: {verdict.reason} "
                f"({verdict.events_checked} events verified before it)"
            )
        against = " and it matches the checkpoint" if checkpoint else ""
        self.stdout.write(
            self.style.SUCCESS(f"Audit chain intact: {verdict.events_checked} events verified{against}.")
        )
