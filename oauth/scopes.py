"""Scopes are permission patterns (`api_keys:generate`, `*:read`, `read`, `*`), not a fixed list."""

from oauth2_provider.scopes import BaseScopes

from oauth.rules import default_scopes, describe_scope, supported_scopes


class ScopeDescriptions(dict):
    """Describes every scope, advertised or not: the toolkit looks each requested scope up here."""

    def __missing__(self, scope: str) -> str:
        return describe_scope(scope)


class PermissionScopes(BaseScopes):
    def get_all_scopes(self) -> ScopeDescriptions:
        return ScopeDescriptions({scope: describe_scope(scope) for scope in supported_scopes()})

    def get_available_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        """What discovery advertises; requests are checked by `ChittyAuthValidator.validate_scopes`."""
        return supported_scopes()

    def get_default_scopes(self, application=None, request=None, *args, **kwargs) -> list[str]:
        return default_scopes(application)
