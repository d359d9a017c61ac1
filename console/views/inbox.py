"""The inbox: the conversations waiting for the team, newest activity first.

`GET /inbox/` renders the page: a view (`?view=open|pending|resolved|mine|unassigned`, open by default) narrowed
by channel account (`?channel=<id>`) and tag (`?tag=<name>`), 50 rows a page, older pages by keyset cursor
(`?cursor=`). The first page keeps itself current without a reload: its list polls `GET /inbox/rows/` every
3 seconds, which answers 204 (nothing to swap) while the page is unchanged, so an agent's focus and scroll stay
where they are; otherwise it sends the new list, the view counts and an "N new" notice for screen readers.

Reads go through `console.selectors.inbox`, which applies the agent's channel scope; a channel account outside
it answers 404, a malformed parameter 400 with the reason.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from access.selectors import channel_scope_for_user
from console.selectors.inbox import (
    COUNT_CAP,
    VIEWS,
    InboxPage,
    InboxQuery,
    aware_datetime,
    inbox_channel_choices,
    inbox_counts,
    inbox_page,
    inbox_tag_choices,
    keyset_cursor,
    keyset_position,
)
from conversations.models import ConversationTag

VIEW_LABELS = {
    "open": gettext_lazy("Open"),
    "pending": gettext_lazy("Pending"),
    "resolved": gettext_lazy("Resolved"),
    "mine": gettext_lazy("Mine"),
    "unassigned": gettext_lazy("Unassigned"),
}
TAG_MAX_LENGTH = ConversationTag._meta.get_field("name").max_length
SNIPPET_DISPLAY = 140


class BadQuery(Exception):
    """A malformed inbox parameter; the message says which and why."""


def _parse(request: HttpRequest) -> InboxQuery:
    """The inbox query from the URL: BadQuery for a malformed value, Http404 for a channel account out of view."""
    params = request.GET
    view = params.get("view") or "open"
    if view not in VIEWS:
        raise BadQuery(_("Unknown view %(view)s: use one of %(views)s.") % {"view": view[:40],
                                                                              "views": ", ".join(VIEWS)})
    channel_id = None
    raw_channel = params.get("channel", "")
    if raw_channel:
        if not raw_channel.isdigit() or len(raw_channel) > 18:
            raise BadQuery(_("The channel filter must be a channel account id."))
        channel_id = int(raw_channel)
        if not channel_scope_for_user(request.user).allows(channel_id):
            raise Http404("No such channel account.")
    tag = params.get("tag", "").strip()
    if len(tag) > TAG_MAX_LENGTH:
        raise BadQuery(_("A tag has at most %(max)d characters.") % {"max": TAG_MAX_LENGTH})
    after = _cursor(params.get("cursor", ""))
    return InboxQuery(view=view, channel_id=channel_id, tag=tag, after=after)


def _cursor(raw: str) -> tuple[dt.datetime, int] | None:
    if not raw:
        return None
    try:
        return keyset_position(raw)
    except ValueError:
        raise BadQuery(_("This page link is no longer valid: start again from the newest conversations.")) from None


def _url(name: str, query: InboxQuery, **changes: object) -> str:
    """The URL of `name` for `query` with `changes` (None drops a parameter); defaults are left out."""
    values = {"view": query.view, "channel": query.channel_id, "tag": query.tag, **changes}
    params = QueryDict(mutable=True)
    for key, value in values.items():
        if value not in (None, "") and not (key == "view" and value == "open"):
            params[key] = str(value)
    encoded = params.urlencode()
    return reverse(name) + (f"?{encoded}" if encoded else "")


def _first_line(text: str) -> str:
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    return line if len(line) <= SNIPPET_DISPLAY else line[: SNIPPET_DISPLAY - 1].rstrip() + "…"


def _list_context(request: HttpRequest, query: InboxQuery, page: InboxPage, counts: dict[str, int],
                  now: dt.datetime) -> dict:
    for row in page.rows:
        row.first_line = _first_line(row.latest.get("text") or "")
        row.is_private = row.latest.get("kind") == "dm"
        customer = row.identity.customer if row.identity is not None else None
        row.customer_name = (customer.display_name if customer else "") or (
            (row.identity.display_name or row.identity.handle) if row.identity else "")
    next_url = None
    if page.next_after is not None:
        at, pk = page.next_after
        next_url = _url("console:inbox", query, cursor=keyset_cursor(at, pk))
    seen = aware_datetime(request.GET.get("seen", ""))
    for row in page.rows:
        row.is_new = seen is not None and row.last_activity_at > seen
    new_count = sum(1 for row in page.rows if row.is_new)
    newest = max((row.last_activity_at for row in page.rows), default=None)
    return {
        "query": query,
        "view_label": VIEW_LABELS[query.view],
        "rows": page.rows,
        "now": now,
        "next_url": next_url,
        "is_first_page": query.after is None,
        "tabs": [
            {"view": view, "label": VIEW_LABELS[view], "count": counts[view], "url": _url("console:inbox", query,
                                                                                          view=view, cursor=None)}
            for view in VIEWS
        ],
        "count_cap": COUNT_CAP - 1,  # a count at the cap shows as "999+"
        "version": page.version(counts=counts, now=now),
        "newest": newest.isoformat() if newest else (seen.isoformat() if seen else ""),
        "new_count": new_count,
        "poll_url": _url("console:inbox-rows", query),
        "newest_url": _url("console:inbox", query, cursor=None),
    }


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    try:
        query = _parse(request)
    except BadQuery as exc:
        return render(request, "console/inbox.html", {"nav": "inbox", "error": str(exc), "tabs": [], "rows": [],
                                                      "query": InboxQuery()}, status=400)
    now = timezone.now()
    page = inbox_page(user=request.user, query=query)
    counts = inbox_counts(user=request.user, query=query)
    context = _list_context(request, query, page, counts, now)
    context.update(
        nav="inbox",
        channels=inbox_channel_choices(user=request.user),
        tags=inbox_tag_choices(user=request.user, selected=query.tag),
        views=[(view, VIEW_LABELS[view]) for view in VIEWS],
    )
    return render(request, "console/inbox.html", context)


@login_required
@require_GET
def inbox_rows(request: HttpRequest) -> HttpResponse:
    """The polled first page of the list (any `cursor` is ignored): 204 while it equals the version `v` the
    page already shows."""
    try:
        query = _parse(request)
    except BadQuery as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    query = InboxQuery(view=query.view, channel_id=query.channel_id, tag=query.tag)
    now = timezone.now()
    page = inbox_page(user=request.user, query=query)
    counts = inbox_counts(user=request.user, query=query)
    context = _list_context(request, query, page, counts, now)
    if request.GET.get("v") == context["version"]:
        return HttpResponse(status=204)
    context["oob"] = True
    return render(request, "console/partials/inbox_list.html", context)


urlpatterns = [
    path("inbox/", inbox, name="inbox"),
    path("inbox/rows/", inbox_rows, name="inbox-rows"),
]
