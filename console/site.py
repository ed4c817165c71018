"""The admin as ChittyAuth's security console: Django's admin with a dashboard at `/admin/dashboard/`."""

from functools import partial

from django.contrib.admin import AdminSite, ModelAdmin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from console import login_throttle, staff_logins
from console.admin_audit import AuditedModelAdmin


class ConsoleAdminSite(AdminSite):
    site_header = "ChittyAuth security console"
    site_title = "ChittyAuth admin"
    index_title = "Security administration"
    site_url = None  # the service has no public pages to "view"

    def register(self, model_or_iterable, admin_class=None, **options) -> None:
        """Every admin registered here, whichever app it comes from, audits what staff change through it."""
        admin_class = admin_class or ModelAdmin
        if not issubclass(admin_class, AuditedModelAdmin):
            admin_class = type(f"Audited{admin_class.__name__}", (AuditedModelAdmin, admin_class), {})
        super().register(model_or_iterable, admin_class, **options)

    def login(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        """Past the failed-login rate limit, refuse before axes and the password check touch the database."""
        if request.method == "POST":
            username = str(request.POST.get("username", ""))
            wait = login_throttle.retry_after(request.META.get("REMOTE_ADDR", ""), username)
            if wait is not None:
                staff_logins.record_throttled_login(request, username)
                context = {**self.each_context(request), "retry_after": wait, "username": username}
                response = TemplateResponse(request, "admin/login_throttled.html", context, status=429)
                response["Retry-After"] = str(wait)
                return response
        return super().login(request, extra_context)

    def get_urls(self):
        # Imported here: the dashboard reads models, and this module loads with INSTALLED_APPS, before them.
        from console.dashboard import dashboard_view

        dashboard = self.admin_view(partial(dashboard_view, self))
        return [path("dashboard/", dashboard, name="dashboard"), *super().get_urls()]
