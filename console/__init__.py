"""The security console: Django's admin site with a dashboard, and staff logins in the audit trail."""
