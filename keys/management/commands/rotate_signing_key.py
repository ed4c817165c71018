from django.core.management.base import BaseCommand, CommandError

from kernel.callers import Caller
from kernel.errors import ServiceError
from keys.signing_keys import ASYMMETRIC_ALGORITHMS, DEFAULT_ALGORITHM, rotate_signing_key


class Command(BaseCommand):
    help = (
        "Activate a new JWT signing key. The previous key stays published in the JWKS, and keeps verifying, "
        "until every token it signed has expired."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--algorithm", choices=ASYMMETRIC_ALGORITHMS, default=DEFAULT_ALGORITHM)

    def handle(self, *args, algorithm: str, **options) -> None:
        try:
            signing_key = rotate_signing_key(Caller.system("cli"), algorithm=algorithm)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(signing_key.kid)
