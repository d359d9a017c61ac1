"""The console's search page: customers by name, handle, e-mail, phone or customer number, and message text.

`GET /search/?q=` (the quick search box of every page submits here). Only what the user may see is ever found:
the customer search runs over `customer_list_for_user`, the message search over `interaction_list_for_user`. An
empty query shows a hint; a query shorter than two characters, or longer than 200, is refused with a message (400;
a live-search request by htmx gets the message in a 200, since htmx swaps only successful answers).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from ..selectors.search import MAX_QUERY, MIN_MESSAGE_QUERY, MIN_QUERY, customer_results, message_results


def _query_error(query: str) -> str:
    if query and len(query) < MIN_QUERY:
        return _("Type at least %(n)d characters to search.") % {"n": MIN_QUERY}
    if len(query) > MAX_QUERY:
        return _("The search text is too long (at most %(n)d characters).") % {"n": MAX_QUERY}
    return ""


@require_GET
@login_required
def search(request: HttpRequest) -> HttpResponse:
    query = (request.GET.get("q") or "").replace("\x00", "").strip()
    context = {"nav": "search", "search_q": query, "q": query, "min_message_query": MIN_MESSAGE_QUERY,
               "customers": [], "interactions": [], "searched": False}
    context["error"] = _query_error(query)
    status = 400 if context["error"] else 200
    if query and not context["error"]:
        context.update(searched=True, customers=customer_results(user=request.user, query=query),
                       interactions=message_results(user=request.user, query=query),
                       messages_searched=len(query) >= MIN_MESSAGE_QUERY)
    if request.htmx:
        # Live results while typing: htmx swaps only successful answers, so the message rides on a 200 here.
        return render(request, "console/partials/search_results.html", context)
    return render(request, "console/search.html", context, status=status)


urlpatterns = [path("search/", search, name="search")]
