"""The console stands in for `django.contrib.admin`; every staff login, failed login, lockout and logout is
written to the audit trail."""

from django.contrib.admin.apps import AdminConfig


class AdminConsoleConfig(AdminConfig):
    """Stands in for `django.contrib.admin` in INSTALLED_APPS, so `admin.site` is the console site."""

    default_site = "console.site.ConsoleAdminSite"

    def ready(self) -> None:
        super().ready()
        from console import staff_logins

        staff_logins.connect()
