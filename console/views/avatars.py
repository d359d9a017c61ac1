"""`GET /avatars/<identity id>/`: a social identity's profile picture through the server (see console/avatars.py)."""

from __future__ import annotations

import base64

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET

from contacts.api.selectors import identity_list_for_user

from ..avatars import avatar_fetch

# A transparent 1x1 GIF: what an identity without a usable picture shows (its initials, under it), so that the
# agent's browser logs no failed request for every such row.
TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@login_required
@require_GET
def avatar(request: HttpRequest, identity_id: int) -> HttpResponse:
    """The picture of an identity in the user's view (transparent when it has none that can be shown); 404 when
    the identity is out of view."""
    found_url = identity_list_for_user(user=request.user).filter(pk=identity_id).values_list("avatar_url",
                                                                                            flat=True).first()
    if found_url is None:
        raise Http404("No such identity.")
    found = avatar_fetch(found_url) if found_url else None
    if found is None:
        response = HttpResponse(TRANSPARENT_GIF, content_type="image/gif")
        response["Cache-Control"] = "private, max-age=600"
    else:
        response = HttpResponse(found.body, content_type=found.content_type)
        response["Cache-Control"] = "private, max-age=86400"
    response["Content-Disposition"] = "inline"
    # Opened on its own, the file runs nothing and loads nothing.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


urlpatterns = [path("avatars/<int:identity_id>/", avatar, name="avatar")]
