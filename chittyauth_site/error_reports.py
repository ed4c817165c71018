"""What Django's error reports (the DEBUG page, error mails to ADMINS) may show of the settings. Django hides
settings named like a secret (KEY, TOKEN, PASS, ...); ours also carry credentials in URLs (`DATABASE_URL`,
`REDIS_URL`, `AUDIT_WEBHOOK_URL`, a broker URL, the authority's endpoint), so those are hidden too."""

import re

from django.views.debug import SafeExceptionReporterFilter


class SettingsFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|ENDPOINT|DSN", re.I
    )
