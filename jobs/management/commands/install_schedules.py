from django.core.management.base import BaseCommand

from jobs.schedules import install_default_schedules


class Command(BaseCommand):
    help = (
        "Create the default schedules of the cleanup and revalidation jobs where missing (migrate already "
        "does); existing ones keep their edits unless --reset."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="restore the default interval and enable every default schedule",
        )

    def handle(self, *args, reset: bool = False, **options) -> None:
        for name, outcome in install_default_schedules(reset=reset).items():
            self.stdout.write(f"{name}: {outcome}")
