from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from grants.models import Grant
from grants.services import grant_permission
from kernel.callers import Caller
from kernel.errors import ServiceError
from keys.services import generate_api_key
from principals.services import register_identity


class Command(BaseCommand):
    help = "Create the first identity, grant it `*`, and print its API key once. Refuses if one exists."

    def add_arguments(self, parser) -> None:
        parser.add_argument("chitty_id")
        parser.add_argument("--name", default="Bootstrap administrator")

    def handle(self, *args, chitty_id: str, name: str, **options) -> None:
        if Grant.objects.filter(permission="*", revoked_at__isnull=True).exists():
            raise CommandError(
                "An identity holding * already exists; bootstrap runs once. Use the admin or API."
            )
        system = Caller.system("bootstrap")
        try:
            with transaction.atomic():
                identity = register_identity(system, chitty_id, display_name=name)
                grant_permission(system, grantee_chitty_id=identity.chitty_id, permission="*")
                issued = generate_api_key(
                    system, chitty_id=identity.chitty_id, name="bootstrap key", scopes=["*"]
                )
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"Created {identity.chitty_id} holding *.")
        self.stdout.write(f"Key ID: {issued.api_key.key_id}")
        self.stdout.write(f"API Key: {issued.secret}")
        self.stdout.write("Store this key now: it is shown once and cannot be read back.")
