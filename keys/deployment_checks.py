"""`manage.py check --deploy` names any secret still at its published development value."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def development_secrets(app_configs, **kwargs) -> list[Warning]:
    return [
        Warning(
            f"{name} is the published development value: anyone can forge its tokens or sessions.",
            hint=f"Set {name} to a random secret; until then the service answers only on loopback.",
            id="chittyauth.W001",
        )
        for name in getattr(settings, "DEVELOPMENT_SECRETS_IN_USE", [])
    ]
