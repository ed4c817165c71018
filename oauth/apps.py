from django.apps import AppConfig


class OAuthConfig(AppConfig):
    name = "oauth"
    verbose_name = "OAuth 2.1"

    def ready(self) -> None:
        from oauth import signals

        signals.connect()
