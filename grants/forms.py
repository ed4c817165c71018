"""Form fields for the admin's grant and scope inputs."""

from django import forms


class ScopeListField(forms.CharField):
    """Scopes typed on one line, separated by spaces or commas; validated by the services that use them."""

    def to_python(self, value: object) -> list[str]:
        return super().to_python(value).replace(",", " ").split()
