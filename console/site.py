"""The admin as ChittyAuth's security console: Django's admin with a dashboard at `/admin/dashboard/`."""

from functools import partial

from django.contrib.admin import AdminSite
from django.urls import path


class ConsoleAdminSite(AdminSite):
    site_header = "ChittyAuth security console"
    site_title = "ChittyAuth admin"
    index_title = "Security administration"
    site_url = None  # the service has no public pages to "view"

    def get_urls(self):
        # Imported here: the dashboard reads models, and this module loads with INSTALLED_APPS, before them.
        from console.dashboard import dashboard_view

        dashboard = self.admin_view(partial(dashboard_view, self))
        return [path("dashboard/", dashboard, name="dashboard"), *super().get_urls()]
