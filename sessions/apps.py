from django.apps import AppConfig


class AuthSessionsConfig(AppConfig):
    """Label `auth_sessions`: `sessions` belongs to django.contrib.sessions, which the admin needs."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "sessions"
    label = "auth_sessions"
    verbose_name = "Sessions"

    def ready(self) -> None:
        from sessions import handlers

        handlers.connect()
