import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.services import verify_chain
from kernel.errors import ServiceError
from keys.checkpoints import trusted_keys_from_jwks, verify_against_checkpoint


class Command(BaseCommand):
    help = (
        "Verify the audit trail's hash chain; exit non-zero naming the first broken link. With --checkpoint, "
        "also prove the chain was not rewritten before that signed checkpoint; with --jwks, trusting only the "
        "keys in that file (the JWKS kept when the checkpoint was signed), not the database's."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--checkpoint", help="a checkpoint token from GET /api/v1/audit/checkpoints")
        parser.add_argument("--jwks", type=Path, help="a JWK Set file saved from /.well-known/jwks.json")

    def handle(self, *args, checkpoint: str | None = None, jwks: Path | None = None, **options) -> None:
        if jwks and not checkpoint:
            raise CommandError("--jwks verifies a --checkpoint: give both")
        try:
            trusted = trusted_keys_from_jwks(self._read_jwks(jwks)) if jwks else None
            verdict = verify_against_checkpoint(checkpoint.strip(), trusted) if checkpoint else verify_chain()
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

    @staticmethod
    def _read_jwks(path: Path) -> object:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"INVALID_CHECKPOINT: cannot read the JWKS file {path}: {exc}") from exc
