"""A confirmation page for admin actions that cannot be undone (revoke, end sessions), shown before they run:
the action runs only when the form on that page is posted back with `confirm=yes`; and what an action that ran
tells the console's audit event about the objects its service refused."""

from django.contrib.admin import ModelAdmin, helpers
from django.http import HttpRequest
from django.template.response import TemplateResponse


def confirmed(request: HttpRequest) -> bool:
    return request.POST.get("confirm") == "yes"


def nothing_ran(response: TemplateResponse) -> TemplateResponse:
    """Mark a page an admin action shows before it changes anything (a confirmation, a form to fill in), so the
    console does not audit the action as run (`console/admin_audit.py`); any other answer counts as run."""
    response.ran_nothing = True
    return response


def ran_nothing(response: object) -> bool:
    return getattr(response, "ran_nothing", False)


_REFUSALS = "chittyauth_admin_action_refusals"


def expect_refusals(request: HttpRequest) -> dict[str, str]:
    """Start collecting the refusals of the action about to run on `request`: selected pk -> error code."""
    refusals: dict[str, str] = {}
    setattr(request, _REFUSALS, refusals)
    return refusals


def note_refusal(request: HttpRequest, pk: object, code: str) -> None:
    """The service refused the selected object `pk`, so the action's audit event must not count it as done."""
    refusals = getattr(request, _REFUSALS, None)
    if refusals is not None:
        refusals[str(pk)] = code


def confirmation_page(
    model_admin: ModelAdmin,
    request: HttpRequest,
    queryset,
    *,
    verb: str,
    consequence: str,
    items: list[str],
) -> TemplateResponse:
    """The page listing what `verb` would affect, posting the same selection back with `confirm=yes`."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"{verb.capitalize()} {len(items)} {'item' if len(items) == 1 else 'items'}?",
        "opts": model_admin.model._meta,
        "verb": verb,
        "consequence": consequence,
        "items": items,
        "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return nothing_ran(TemplateResponse(request, "admin/confirm_action.html", context))
