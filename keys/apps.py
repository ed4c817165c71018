from django.apps import AppConfig


class KeysConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "keys"
    verbose_name = "Keys and tokens"

    def ready(self) -> None:
        from keys import deployment_checks, handlers  # noqa: F401 - deployment_checks registers itself

        handlers.connect()
