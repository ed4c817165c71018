from django.core.management.base import BaseCommand

from kernel.callers import Caller
from keys.checkpoints import sign_checkpoint


class Command(BaseCommand):
    help = "Sign a checkpoint of the audit chain's head now (beat does it every hour) and print its token."

    def handle(self, *args, **options) -> None:
        checkpoint = sign_checkpoint(Caller.system("manage.py sign_audit_checkpoint"))
        if checkpoint is None:
            self.stdout.write("The audit chain is empty: nothing to sign.")
            return
        self.stdout.write(checkpoint.token)
