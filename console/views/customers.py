"""The console's customer pages: the profile with its timeline, identity link and unlink, merge with a side-by-side
preview and its undo, GDPR export and erasure, and the duplicate review queue.

Views stay thin: reads go through the apps' `*_for_user` selectors (via `console.selectors.customers`), writes
through the same services the REST API calls (`contacts.merge`, `contacts.suggestions`, `contacts.gdpr`), so a
rule is never implemented twice. The access rules are the API's:

- anything outside the user's view answers 404, whatever the action;
- link, unlink, merge, undo and the decisions on duplicate suggestions need `access.merge_customers` (403 for a
  user who sees the customer but lacks it);
- GDPR export and erasure need `access.handle_gdpr_requests` and a view of every channel account, because they
  reach data of every account.

A refusal of a service (a merge into a tombstone or into itself, a merge that lost a race, an undo out of order, a
legal hold) is shown to the agent as a page with the reason and the matching 4xx status, never as a 500.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contacts.api.selectors import (
    customer_get_for_user,
    customer_in_view_or_404,
    identity_in_view_or_404,
    identity_list_for_user,
    merge_event_get_for_user,
    suggestion_get_for_user,
)
from contacts.gdpr import customer_erase, customer_export
from contacts.merge import (
    SCALAR_FIELDS,
    customer_merge,
    customer_merge_preview,
    customer_unmerge,
    identity_link,
    identity_unlink,
)
from contacts.suggestions import suggestion_accept, suggestion_reject
from socialcrm.errors import Conflict, NotFound, ServiceError

from ..selectors.customers import (
    MAX_ID,
    BadInput,
    Forbidden,
    conversation_counts,
    customer_profile,
    duplicates_page,
    has_gdpr_permission,
    has_merge_permission,
    initials,
    legal_holds,
    link_candidates,
    merge_candidates,
    merge_field_rows,
    merge_sides,
    open_suggestion,
    parse_id,
    rejected_pair,
    timeline_page,
)

REASON_MAX_LENGTH = 2000
ERASE_WORD = "ERASE"

View = Callable[..., HttpResponse]


# --- errors -------------------------------------------------------------------------------------------------


def error_message(exc: ServiceError) -> str:
    """What the agent reads when a service refuses: a translated sentence per known code, else the service's own."""
    known = {
        "merge_into_self": _("A customer cannot be merged with itself. Choose another customer."),
        "target_merged": _("This customer was merged into another customer already: merge into the surviving "
                           "customer instead."),
        "source_merged": _("The other customer was merged already, perhaps by a colleague a moment ago. Open the "
                           "surviving customer and review again."),
        "customer_number_conflict": _("The two customers have different customer numbers: choose which one to "
                                      "keep."),
        "invalid_choice": _("Choose either this customer's value or the other customer's value."),
        "cannot_link": _("These two customers were recorded as two different people (a rejected duplicate "
                         "suggestion), so they cannot be merged here."),
        "already_undone": _("This merge was undone already."),
        "later_merge_not_undone": _("A later merge of one of these customers is not undone yet: undo the newest "
                                    "merge first."),
        "identity_moved_since": _("An identity of this merge was linked elsewhere since: undo that first."),
        "merge_state_changed": _("These customers changed since the merge, so it can no longer be undone here."),
        "already_linked": _("This identity belongs to this customer already."),
        "identity_moved": _("The identity was moved by someone else a moment ago; reload and try again."),
        "only_identity": _("This is the customer's only identity: there is nothing to split it from."),
        "legal_hold": _("This customer is under a legal hold and cannot be erased."),
        "suggestion_decided": _("Someone decided on this suggestion already."),
        "restricted_user": _("Only staff who see every channel account may do this."),
    }
    return str(known.get(exc.code) or exc.detail)


def error_response(request: HttpRequest, exc: ServiceError, *, back: str = "") -> HttpResponse:
    """The error page: the agent's message, the service's detail, and the status the error carries."""
    message = error_message(exc)
    detail = str(exc.detail)
    return render(request, "console/customer_error.html", {
        "message": message, "detail": detail if detail != message else "", "back": back,
        "status": exc.status_code,
    }, status=exc.status_code)


def service_errors(view: View) -> View:
    """Render a `ServiceError` raised by the view (or what it calls) as the error page with its 4xx status."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except ServiceError as exc:
            return error_response(request, exc, back=_safe_next(request))

    return wrapper


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return ""


def _path_id(value: int, what: str) -> int:
    if not 0 < value <= MAX_ID:
        raise NotFound(_("No such %(what)s.") % {"what": what}, code="not_found")
    return value


def _reason(data: QueryDict, *, required: bool) -> str:
    reason = (data.get("reason") or "").replace("\x00", "").strip()
    if required and not reason:
        raise BadInput(_("Give a reason: it is recorded in the audit log."), code="reason_required", field="reason")
    if len(reason) > REASON_MAX_LENGTH:
        raise BadInput(_("The reason is too long (at most %(n)d characters).") % {"n": REASON_MAX_LENGTH},
                       code="reason_too_long", field="reason")
    return reason


def _require_merge_permission(request: HttpRequest) -> None:
    if not has_merge_permission(request.user):
        raise Forbidden(_("Only CRM staff may link, unlink, merge and undo merges (permission: merge customers)."),
                        code="permission_denied")


def _require_gdpr_permission(request: HttpRequest) -> None:
    if not has_gdpr_permission(request.user):
        raise Forbidden(_("Only CRM staff who handle GDPR requests may export or erase a customer's data."),
                        code="permission_denied")


def _profile_url(customer_id: int) -> str:
    return reverse("console:customer", args=[customer_id])


# --- the profile --------------------------------------------------------------------------------------------


@require_GET
@login_required
@service_errors
def customer(request: HttpRequest, customer_id: int) -> HttpResponse:
    """The profile: who the customer is, their identities, the timeline across channels, duplicates, merges."""
    found, survivor_id = customer_get_for_user(user=request.user, customer_id=_path_id(customer_id, _("customer")))
    if survivor_id is not None:
        return redirect("console:customer", survivor_id)
    profile = customer_profile(user=request.user, customer=found, cursor=request.GET.get("cursor"))
    merged = request.GET.get("merged", "")
    just_merged = next((m for m in profile.merges if str(m.pk) == merged and m.customer_id == found.pk
                        and m.undone_by_id is None), None)
    return render(request, "console/customer.html", {
        "profile": profile, "customer": found, "page": profile.timeline, "just_merged": just_merged,
        "from_cursor": bool(request.GET.get("cursor")), "first_page": not request.GET.get("cursor"),
    })


@require_GET
@login_required
@service_errors
def customer_timeline(request: HttpRequest, customer_id: int) -> HttpResponse:
    """The next page of the timeline (an htmx partial, also reachable as a plain page)."""
    found, survivor_id = customer_get_for_user(user=request.user, customer_id=_path_id(customer_id, _("customer")),
                                               with_related=False)
    if survivor_id is not None:
        url = reverse("console:customer-timeline", args=[survivor_id])
        return redirect(f"{url}?{request.GET.urlencode()}" if request.GET else url)
    page = timeline_page(user=request.user, customer_id=found.pk, cursor=request.GET.get("cursor"))
    return render(request, "console/partials/customer_timeline.html", {"customer": found, "page": page})


# --- identities ---------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
@service_errors
def customer_link(request: HttpRequest, customer_id: int) -> HttpResponse:
    """Find an identity (by id or handle) and link it to this customer."""
    found, survivor_id = customer_get_for_user(user=request.user, customer_id=_path_id(customer_id, _("customer")),
                                               with_related=False)
    if survivor_id is not None:
        if request.method == "POST":
            raise Conflict(_("This customer was merged into another one: link to the surviving customer."),
                           code="target_merged")
        return redirect("console:customer-link", survivor_id)
    _require_merge_permission(request)
    if request.method == "POST":
        identity_id = identity_in_view_or_404(user=request.user,
                                              identity_id=parse_id(request.POST.get("identity"), field="identity"))
        reason = _reason(request.POST, required=True)
        identity_link(identity=identity_id, customer=found.pk, actor=request.user, reason=reason)
        messages.success(request, _("The identity was linked to this customer; its conversations moved with it."))
        return redirect("console:customer", found.pk)
    query = (request.GET.get("q") or "").replace("\x00", "").strip()[:200]
    return render(request, "console/customer_link.html", {
        "customer": found, "q": query,
        "candidates": link_candidates(user=request.user, customer_id=found.pk, text=query),
    })


@require_POST
@login_required
@service_errors
def identity_unlink_view(request: HttpRequest, identity_id: int) -> HttpResponse:
    """Split an identity off its customer into a new customer of its own."""
    owner = identity_list_for_user(user=request.user).filter(
        pk=_path_id(identity_id, _("social identity"))).values_list("customer_id", flat=True).first()
    if owner is None:
        raise NotFound(_("No such social identity."), code="not_found")
    _require_merge_permission(request)
    reason = _reason(request.POST, required=True)
    new_customer = identity_unlink(identity=identity_id, actor=request.user, reason=reason)
    messages.success(request, _("The identity was split off into a new customer (no. %(id)s).")
                     % {"id": new_customer.pk})
    return redirect("console:customer", owner)


# --- merge and undo -----------------------------------------------------------------------------------------


def _choices(data: QueryDict) -> dict[str, str]:
    choices = {}
    for name in SCALAR_FIELDS:
        side = data.get(f"choice_{name}")
        if side in (None, ""):
            continue
        if side not in ("target", "source"):
            raise BadInput(_("Choose either this customer's value or the other customer's value."),
                           code="invalid_choice", field=f"choice_{name}")
        choices[name] = side
    return choices


def _merge_context(request: HttpRequest, target_id: int, source_id: int, choices: Mapping[str, str],
                   suggestion_id: int | None) -> dict[str, Any]:
    """The side-by-side preview; raises what the merge would raise for the pair (itself, a tombstone)."""
    preview = customer_merge_preview(target=target_id, source=source_id)
    sides = merge_sides(user=request.user, target_id=target_id, source_id=source_id)
    target, source = sides[target_id], sides[source_id]
    counts = conversation_counts([target_id, source_id])
    moving_points = [p for p in preview.contact_points if p.outcome == "moved"]
    return {
        "target": target, "source": source, "preview": preview, "rows": merge_field_rows(preview, choices),
        "target_initials": initials(target.display_name), "source_initials": initials(source.display_name),
        "moving_identities": list(source.identities.all()), "moving_points": moving_points,
        "contact_points": preview.contact_points,
        "target_conversations": counts.get(target_id, 0), "source_conversations": counts.get(source_id, 0),
        "rejected": rejected_pair(target_id, source_id), "suggestion_id": suggestion_id,
        "reason": (request.POST.get("reason") or "") if request.method == "POST" else "",
    }


def _merge(request: HttpRequest, context: dict[str, Any], choices: Mapping[str, str]) -> int:
    """Run the merge the agent confirmed; the merge's audit event id.

    Reached from an open duplicate suggestion and merging the way accepting it would (the older customer keeps,
    no value taken from the newer one), the suggestion is accepted, so its decision is recorded; otherwise it is
    a plain merge with the agent's choices.
    """
    target, source = context["target"], context["source"]
    if context["rejected"] is not None:
        raise Conflict(_("These customers were recorded as two different people."), code="cannot_link")
    reason = _reason(request.POST, required=False)
    suggestion_id = context["suggestion_id"]
    if suggestion_id is not None and all(side == "target" for side in choices.values()):
        suggestion = open_suggestion(user=request.user, suggestion_id=suggestion_id, target_id=target.pk,
                                     source_id=source.pk)
        if suggestion is not None and context["preview"].can_merge and _older(target, source):
            return suggestion_accept(suggestion=suggestion.pk, actor=request.user, reason=reason).pk
    return customer_merge(target=target.pk, source=source.pk, actor=request.user, reason=reason,
                          choices=dict(choices)).pk


def _older(target: Any, source: Any) -> bool:
    """Whether `target` is the customer `suggestion_accept` would keep (the older one, ties: the lower id)."""
    return (target.created_at, target.pk) <= (source.created_at, source.pk)


@require_http_methods(["GET", "POST"])
@login_required
@service_errors
def customer_merge_view(request: HttpRequest, customer_id: int) -> HttpResponse:
    """Merge another customer into this one: choose the other customer, preview side by side, confirm."""
    target_id = customer_in_view_or_404(user=request.user, customer_id=_path_id(customer_id, _("customer")))
    _require_merge_permission(request)
    data = request.POST if request.method == "POST" else request.GET
    raw_source = (data.get("source") or "").strip()
    if not raw_source:
        if request.method == "POST":
            raise BadInput(_("Choose the customer to merge into this one."), code="source_required", field="source")
        query = (request.GET.get("q") or "").replace("\x00", "").strip()[:200]
        target = merge_sides(user=request.user, target_id=target_id, source_id=target_id)[target_id]
        return render(request, "console/merge_choose.html", {
            "target": target, "q": query,
            "candidates": merge_candidates(user=request.user, customer_id=target_id, text=query),
        })
    source_id = customer_in_view_or_404(user=request.user, customer_id=parse_id(raw_source, field="source"),
                                        field="source")
    choices = _choices(data)
    raw_suggestion = (data.get("suggestion") or "").strip()
    suggestion_id = parse_id(raw_suggestion, field="suggestion") if raw_suggestion else None
    context = _merge_context(request, target_id, source_id, choices, suggestion_id)
    status = 200
    if request.method == "POST":
        try:
            event_id = _merge(request, context, choices)
        except ServiceError as exc:
            context["error"] = error_message(exc)
            status = exc.status_code
        else:
            messages.success(request, _("“%(source)s” was merged into this customer. You can undo the merge below.")
                             % {"source": context["source"]})
            return redirect(f"{_profile_url(target_id)}?merged={event_id}")
    return render(request, "console/merge.html", context, status=status)


@require_POST
@login_required
@service_errors
def merge_undo(request: HttpRequest, event_id: int) -> HttpResponse:
    """Undo a merge: both customers as they were; the agent lands on the customer that was merged away."""
    event = merge_event_get_for_user(user=request.user, event_id=_path_id(event_id, _("merge")))
    _require_merge_permission(request)
    reason = _reason(request.POST, required=False)
    try:
        customer_unmerge(merge_event=event.pk, actor=request.user, reason=reason)
    except ServiceError as exc:
        return error_response(request, exc, back=_profile_url(event.customer_id))
    messages.success(request, _("The merge was undone: this customer and customer no. %(target)s are separate "
                                "again.") % {"target": event.customer_id})
    return redirect("console:customer", event.source_customer_id)


# --- GDPR ---------------------------------------------------------------------------------------------------


@require_POST
@login_required
@service_errors
def customer_export_view(request: HttpRequest, customer_id: int) -> HttpResponse:
    """Download everything held about the person as JSON (recorded as an `export` audit event)."""
    found_id = customer_in_view_or_404(user=request.user, customer_id=_path_id(customer_id, _("customer")))
    _require_gdpr_permission(request)
    data = customer_export(customer=found_id, actor=request.user)
    response = HttpResponse(json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2),
                            content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="customer-{data["customer_id"]}-export.json"'
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
@login_required
@service_errors
def customer_erase_view(request: HttpRequest, customer_id: int) -> HttpResponse:
    """Erase everything held about the person, after the agent typed the customer number (or ERASE) and a reason."""
    found, survivor_id = customer_get_for_user(user=request.user, customer_id=_path_id(customer_id, _("customer")),
                                               with_related=False)
    if survivor_id is not None:
        if request.method == "POST":
            raise Conflict(_("This customer was merged into another one: erase the surviving customer."),
                           code="target_merged")
        return redirect("console:customer-erase", survivor_id)
    _require_gdpr_permission(request)
    context: dict[str, Any] = {"customer": found, "holds": legal_holds(customer_id=found.pk),
                               "erase_word": ERASE_WORD, "initials": initials(found.display_name)}
    if request.method == "GET":
        return render(request, "console/customer_erase.html", context)
    accepted = {ERASE_WORD} | ({found.customer_number.strip()} if found.customer_number.strip() else set())
    try:
        if (request.POST.get("confirm") or "").strip() not in accepted:
            raise BadInput(_("Type the customer number or %(word)s to confirm the erasure.") % {"word": ERASE_WORD},
                           code="confirmation_required", field="confirm")
        reason = _reason(request.POST, required=True)
        event = customer_erase(customer=found.pk, actor=request.user, reason=reason)
    except ServiceError as exc:
        context.update(error=error_message(exc), reason=request.POST.get("reason", ""))
        return render(request, "console/customer_erase.html", context, status=exc.status_code)
    messages.success(request, _("The customer's data was erased (audit event no. %(id)s).") % {"id": event.pk})
    return redirect("console:search")


# --- duplicates ---------------------------------------------------------------------------------------------


@require_GET
@login_required
@service_errors
def duplicates(request: HttpRequest) -> HttpResponse:
    """The review queue: open duplicate suggestions in the user's view, best score first."""
    page = duplicates_page(user=request.user, cursor=request.GET.get("cursor"))
    return render(request, "console/duplicates.html", {
        "page": page, "nav": "duplicates", "can_merge": has_merge_permission(request.user),
        "from_cursor": bool(request.GET.get("cursor")),
    })


@require_POST
@login_required
@service_errors
def duplicate_reject(request: HttpRequest, suggestion_id: int) -> HttpResponse:
    """Record the pair as two people: never suggested again (a cannot-link decision with the reason)."""
    suggestion = suggestion_get_for_user(user=request.user,
                                         suggestion_id=_path_id(suggestion_id, _("duplicate suggestion")))
    _require_merge_permission(request)
    reason = _reason(request.POST, required=True)
    suggestion_reject(suggestion=suggestion.pk, actor=request.user, reason=reason)
    messages.success(request, _("Recorded as two different people; this pair will not be suggested again."))
    return redirect(_safe_next(request) or reverse("console:duplicates"))


urlpatterns = [
    path("customers/<int:customer_id>/", customer, name="customer"),
    path("customers/<int:customer_id>/timeline/", customer_timeline, name="customer-timeline"),
    path("customers/<int:customer_id>/link/", customer_link, name="customer-link"),
    path("customers/<int:customer_id>/merge/", customer_merge_view, name="customer-merge"),
    path("customers/<int:customer_id>/export/", customer_export_view, name="customer-export"),
    path("customers/<int:customer_id>/erase/", customer_erase_view, name="customer-erase"),
    path("identities/<int:identity_id>/unlink/", identity_unlink_view, name="identity-unlink"),
    path("merges/<int:event_id>/undo/", merge_undo, name="merge-undo"),
    path("duplicates/", duplicates, name="duplicates"),
    path("duplicates/<int:suggestion_id>/reject/", duplicate_reject, name="duplicate-reject"),
]
