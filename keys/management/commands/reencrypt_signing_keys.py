from django.core.management.base import BaseCommand, CommandError

from kernel.callers import Caller
from kernel.errors import ServiceError
from keys.signing_keys import reencrypt_private_keys


class Command(BaseCommand):
    help = (
        "Re-encrypt the stored private signing keys under the first key in SIGNING_KEY_ENCRYPTION_KEY. Put the "
        "new key first (keeping the old ones after it), run this, then drop the old ones."
    )

    def handle(self, *args, **options) -> None:
        try:
            kids = reencrypt_private_keys(Caller.system("cli"))
        except ServiceError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"Re-encrypted {len(kids)} private signing key(s): {', '.join(kids) or 'none'}")
