"""The admin as ChittyAuth's security console: Django's admin with a dashboard, and every staff login,
failed login, lockout and logout written to the audit trail."""

from functools import partial

from django.contrib.admin import AdminSite
from django.contrib.admin.apps import AdminConfig
from django.urls import path


class ConsoleAdminSite(AdminSite):
    site_header = "ChittyAuth security console"
    site_title = "ChittyAuth admin"
    index_title = "Security administration"
    site_url = None  # the service has no public pages to "view"

    def get_urls(self):
        # Imported here: the dashboard reads models, and this module loads with INSTALLED_APPS, before them.
        from chittyauth_site.dashboard import dashboard_view

        dashboard = self.admin_view(partial(dashboard_view, self))
        return [path("dashboard/", dashboard, name="dashboard"), *super().get_urls()]


class AdminConsoleConfig(AdminConfig):
    """Stands in for `django.contrib.admin` in INSTALLED_APPS, so `admin.site` is the console site."""

    default_site = "chittyauth_site.admin_site.ConsoleAdminSite"

    def ready(self) -> None:
        super().ready()
        from chittyauth_site import staff_logins

        staff_logins.connect()
