from django.core.management.base import BaseCommand, CommandError

from kernel.callers import Caller
from kernel.errors import ServiceError
from principals.services import register_identity


class Command(BaseCommand):
    help = "Register a ChittyID principal (checked with the ChittyID authority when one is configured)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("chitty_id")
        parser.add_argument("--name", default="", help="display name")

    def handle(self, *args, chitty_id: str, name: str, **options) -> None:
        try:
            identity = register_identity(Caller.system("cli"), chitty_id, display_name=name)
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(
            self.style.SUCCESS(f"Registered {identity.chitty_id} ({identity.entity_type}, {identity.source})")
        )
