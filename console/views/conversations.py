"""The conversation page: the thread, the customer beside it, and what an agent does there.

`GET /conversations/<id>/` shows the header (platform, channel account, status, assignee, priority, tags), the
thread oldest to newest with the internal notes in it, the customer card, the actions (assign, take, status,
tags, note), the reply composer and the presence banner. A conversation outside the agent's channel accounts is
a 404, for the page and for every action.

The page stays current by itself: the thread polls `thread/` every 3 seconds (204 while unchanged, so nothing
moves under the agent's cursor) and the presence banner sends a heartbeat to `presence/` every 5 seconds.

Every action is a POST (CSRF-protected) made by htmx, which swaps the part of the page it changed; the same
forms work without JavaScript (a redirect back to the page after success, the page with the error otherwise).
Writes go through the apps' services (`conversations.api.services`, `channels.services.reply_queue` /
`reply_retry`); a refusal (`ServiceError`) is shown to the agent with its 4xx status, never as a 500.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from channels.services import reply_queue, reply_retry
from console.composer import (
    SIGNATURE_MAX_LENGTH,
    agent_name,
    canned_fill,
    canned_variables,
    default_signature,
    reply_limit,
    reply_window,
    signed,
)
from console.presence import presence_leave, presence_others, presence_touch
from console.selectors.conversations import (
    assignable_users,
    canned_responses,
    conversation_page_get,
    conversation_thread,
    customer_card,
    last_inbound,
)
from console.selectors.inbox import keyset_cursor, keyset_position
from conversations.api.services import (
    conversation_add_note,
    conversation_add_tag,
    conversation_assign,
    conversation_remove_tag,
    conversation_set_status,
)
from conversations.models import Conversation, ConversationTag, Interaction
from conversations.selectors import interaction_get_for_user
from socialcrm.errors import NotFound, ServiceError

TAG_MAX_LENGTH = ConversationTag._meta.get_field("name").max_length
NOTE_MAX_LENGTH = 10_000
# Longest reply text the console accepts where the platform sets no limit of its own (e-mail).
REPLY_MAX_LENGTH = 65_536

# The services' refusals the console words itself (translated); any other keeps the service's own message.
SERVICE_MESSAGES = {
    "reply_empty": gettext_lazy("Write a reply first: it is empty."),
    "note_empty": gettext_lazy("Write the note first: it is empty."),
    "tag_empty": gettext_lazy("Enter a tag name."),
    "unknown_user": gettext_lazy("There is no active user with this id."),
    "assignee_cannot_see": gettext_lazy("This person cannot see the conversation's channel account."),
    "unknown_status": gettext_lazy("Choose open, pending or resolved."),
    "channel_disabled": gettext_lazy("The channel account is disabled: replies cannot be sent."),
    "reply_not_failed": gettext_lazy("Only a failed reply can be sent again."),
}


class Refused(Exception):
    """Input the console refuses before calling a service: a message for the agent and a 4xx status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _message(exc: ServiceError) -> str:
    return str(SERVICE_MESSAGES.get(exc.code, exc.detail))


def _get(request: HttpRequest, conversation_id: int, *, with_secrets: bool = False) -> Conversation:
    try:
        return conversation_page_get(user=request.user, conversation_id=conversation_id, with_secrets=with_secrets)
    except NotFound:
        raise Http404("No such conversation.") from None


def _before(raw: str) -> tuple[dt.datetime, int] | None:
    if not raw:
        return None
    try:
        return keyset_position(raw)
    except ValueError:
        raise Refused(_("This link to earlier messages is no longer valid.")) from None


# -- what the page's parts show ------------------------------------------------------------------------------------


def _customer_name(conversation: Conversation) -> str:
    identity = conversation.identity
    if identity is None:
        return ""
    return identity.customer.display_name or identity.display_name or identity.handle


def _meta_context(request: HttpRequest, conversation: Conversation, error: str = "") -> dict:
    assignees = assignable_users(conversation=conversation)
    listed = {user.pk for user in assignees}
    current = conversation.assignee
    return {
        "conversation": conversation,
        "customer_name": _customer_name(conversation),
        "assignees": [user for user in assignees if user.pk != request.user.pk],
        "assignee_unlisted": current if current is not None and current.pk not in listed
        and current.pk != request.user.pk else None,
        "statuses": Conversation.Status.choices,
        "meta_error": error,
    }


def _thread_context(request: HttpRequest, conversation: Conversation,
                    before: tuple[dt.datetime, int] | None = None) -> dict:
    thread = conversation_thread(user=request.user, conversation=conversation, before=before)
    earlier_url = None
    if thread.earlier is not None:
        at, pk = thread.earlier
        earlier_url = (reverse("console:conversation", args=[conversation.pk])
                       + "?before=" + keyset_cursor(at, pk))
    return {"conversation": conversation, "thread": thread, "earlier_url": earlier_url,
            "viewing_earlier": before is not None}


def _composer_context(request: HttpRequest, conversation: Conversation, *, text: str = "", sign: bool = True,
                      signature: str | None = None, error: str = "", queued: bool = False,
                      canned_id: str = "") -> dict:
    """The composer; `canned_id` puts that canned response, filled in, into the text (the insert without
    JavaScript)."""
    account = conversation.channel_account
    newest_inbound = last_inbound(conversation=conversation)
    identity = conversation.identity
    variables = canned_variables(customer=identity.customer if identity else None, identity=identity,
                                 agent=request.user)
    canned = [{"id": c.pk, "title": c.title, "shortcut": c.shortcut, "text": canned_fill(c.text, variables)}
              for c in canned_responses()]
    if canned_id:
        chosen = next((c for c in canned if str(c["id"]) == canned_id), None)
        if chosen is not None:
            text = chosen["text"]
        else:
            error = _("No such canned response.")
    return {
        "conversation": conversation,
        "composer": {
            "text": text,
            "sign": sign,
            "signature": default_signature(request.user) if signature is None else signature,
            "error": error,
            "queued": queued,
            "limit": reply_limit(account),
            "window": reply_window(account, newest_inbound, now=timezone.now()),
            "private": newest_inbound is not None and newest_inbound.kind == Interaction.Kind.DIRECT_MESSAGE,
        },
        "canned": canned,
    }


def _note_context(conversation: Conversation, *, text: str = "", error: str = "") -> dict:
    return {"conversation": conversation, "note": {"text": text, "error": error}}


def _presence_context(request: HttpRequest, conversation: Conversation, others: list | None = None) -> dict:
    if others is None:
        others = presence_others(conversation_id=conversation.pk, user_id=request.user.pk)
    state = repr([(v.user_id, v.name, v.typing) for v in others]).encode()
    return {"conversation": conversation, "others": others, "presence_version": hashlib.sha256(state).hexdigest()[:16]}


def _page(request: HttpRequest, conversation: Conversation, *, status: int = 200,
          before: tuple[dt.datetime, int] | None = None, meta: dict | None = None, composer: dict | None = None,
          note: dict | None = None) -> HttpResponse:
    """The whole page; `meta`, `composer` and `note` carry what an action without JavaScript left in them."""
    context = {"nav": "inbox", "card": customer_card(user=request.user, conversation=conversation)}
    context.update(_thread_context(request, conversation, before))
    context.update(_meta_context(request, conversation, **(meta or {})))
    context.update(_composer_context(request, conversation, **(composer or {})))
    context.update(_note_context(conversation, **(note or {})))
    context.update(_presence_context(request, conversation))
    return render(request, "console/conversation.html", context, status=status)


def _partial(request: HttpRequest, template: str, context: dict, *, status: int = 200,
             with_thread: Conversation | None = None) -> HttpResponse:
    """One part of the page for htmx; `with_thread` adds the thread as an out-of-band swap."""
    if with_thread is not None:
        context = {**context, **_thread_context(request, with_thread), "thread_oob": True}
    return render(request, template, context, status=status)


def _back(conversation: Conversation) -> HttpResponse:
    return redirect("console:conversation", conversation_id=conversation.pk)


# -- pages -------------------------------------------------------------------------------------------------------


@login_required
@require_GET
def conversation_page(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _get(request, conversation_id)
    try:
        before = _before(request.GET.get("before", ""))
    except Refused as exc:
        return _page(request, conversation, status=exc.status, meta={"error": exc.message})
    composer: dict = {}
    if request.GET.get("canned"):  # the composer's "insert" without JavaScript
        composer = {"canned_id": request.GET["canned"]}
    return _page(request, conversation, before=before, composer=composer)


@login_required
@require_GET
def conversation_thread_part(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The newest window of the thread, polled by the page: 204 while it equals the version `v` shown."""
    conversation = _get(request, conversation_id)
    context = _thread_context(request, conversation)
    if request.GET.get("v") == context["thread"].version:
        return HttpResponse(status=204)
    return render(request, "console/partials/conversation_thread.html", context)


@login_required
@require_POST
def conversation_presence(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The page's heartbeat: records the agent in the cache (no database write) and shows who else is here;
    204 while that equals the version `p` the banner shows. `leave=1` says goodbye."""
    conversation = _get(request, conversation_id)
    if request.POST.get("leave") == "1":
        presence_leave(conversation_id=conversation.pk, user_id=request.user.pk)
        return HttpResponse(status=204)
    others = presence_touch(conversation_id=conversation.pk, user_id=request.user.pk, name=agent_name(request.user),
                            typing=request.POST.get("typing") == "1")
    context = _presence_context(request, conversation, others)
    if request.POST.get("p") == context["presence_version"]:
        return HttpResponse(status=204)
    return render(request, "console/partials/conversation_presence.html", context)


# -- actions -----------------------------------------------------------------------------------------------------


def _meta_action(request: HttpRequest, conversation_id: int, act) -> HttpResponse:
    """Run `act(conversation)` (assign, status, tags); answer with the refreshed header and actions."""
    conversation = _get(request, conversation_id)
    try:
        done = act(conversation)
    except Refused as exc:
        error, status = exc.message, exc.status
    except ServiceError as exc:
        error, status = _message(exc), exc.status_code
    else:
        conversation = _get(request, conversation_id)
        if not request.htmx:
            messages.success(request, done)
            return _back(conversation)
        return _partial(request, "console/partials/conversation_meta.html", _meta_context(request, conversation))
    if not request.htmx:
        return _page(request, conversation, status=status, meta={"error": error})
    return _partial(request, "console/partials/conversation_meta.html",
                    _meta_context(request, conversation, error), status=status)


@login_required
@require_POST
def conversation_assign_action(request: HttpRequest, conversation_id: int) -> HttpResponse:
    def act(conversation: Conversation) -> str:
        value = request.POST.get("assignee", "").strip()
        if value == "me":
            assignee_id = request.user.pk
        elif value in ("", "none"):
            assignee_id = None
        elif value.isdigit() and len(value) <= 18:
            assignee_id = int(value)
        else:
            raise Refused(_("Choose a person from the list."))
        conversation_assign(conversation_id=conversation.pk, assignee_id=assignee_id)
        return _("Assigned.") if assignee_id is not None else _("Unassigned.")

    return _meta_action(request, conversation_id, act)


@login_required
@require_POST
def conversation_status_action(request: HttpRequest, conversation_id: int) -> HttpResponse:
    def act(conversation: Conversation) -> str:
        status = request.POST.get("status", "")
        if status not in Conversation.Status.values:
            raise Refused(_("Choose open, pending or resolved."))
        conversation_set_status(conversation_id=conversation.pk, status=status)
        return _("Status changed.")

    return _meta_action(request, conversation_id, act)


def _tag(request: HttpRequest) -> str:
    name = request.POST.get("tag", "").strip()
    if not name:
        raise Refused(_("Enter a tag name."))
    if len(name) > TAG_MAX_LENGTH:
        raise Refused(_("A tag has at most %(max)d characters.") % {"max": TAG_MAX_LENGTH})
    return name


@login_required
@require_POST
def conversation_tag_add_action(request: HttpRequest, conversation_id: int) -> HttpResponse:
    def act(conversation: Conversation) -> str:
        conversation_add_tag(conversation_id=conversation.pk, name=_tag(request))
        return _("Tag added.")

    return _meta_action(request, conversation_id, act)


@login_required
@require_POST
def conversation_tag_remove_action(request: HttpRequest, conversation_id: int) -> HttpResponse:
    def act(conversation: Conversation) -> str:
        conversation_remove_tag(conversation_id=conversation.pk, name=_tag(request))
        return _("Tag removed.")

    return _meta_action(request, conversation_id, act)


@login_required
@require_POST
def conversation_note_action(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _get(request, conversation_id)
    text = request.POST.get("text", "")
    try:
        if len(text) > NOTE_MAX_LENGTH:
            raise Refused(_("A note has at most %(max)d characters.") % {"max": NOTE_MAX_LENGTH})
        conversation_add_note(conversation_id=conversation.pk, author=request.user, text=text)
    except Refused as exc:
        error, status = exc.message, exc.status
    except ServiceError as exc:
        error, status = _message(exc), exc.status_code
    else:
        if not request.htmx:
            messages.success(request, _("Note added."))
            return _back(conversation)
        return _partial(request, "console/partials/conversation_note.html", _note_context(conversation),
                        with_thread=conversation)
    if not request.htmx:
        return _page(request, conversation, status=status, note={"text": text, "error": error})
    return _partial(request, "console/partials/conversation_note.html",
                    _note_context(conversation, text=text, error=error), status=status)


@login_required
@require_POST
def conversation_reply_action(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Queue a reply (the signature appended when "sign" is on); the outbound queue sends it after commit."""
    conversation = _get(request, conversation_id, with_secrets=True)
    text = request.POST.get("text", "")
    sign = request.POST.get("sign") == "1"
    signature = request.POST.get("signature", "").strip()
    try:
        if len(signature) > SIGNATURE_MAX_LENGTH:
            raise Refused(_("A signature has at most %(max)d characters.") % {"max": SIGNATURE_MAX_LENGTH})
        if len(text) > REPLY_MAX_LENGTH:
            raise Refused(_("A reply has at most %(max)d characters.") % {"max": REPLY_MAX_LENGTH})
        final = signed(text, signature=signature, sign=sign)
        reply_queue(conversation=conversation, text=final, actor=request.user)
    except Refused as exc:
        error, status = exc.message, exc.status
    except ServiceError as exc:
        error, status = _message(exc), exc.status_code
        if exc.code == "reply_too_long":
            error = _("A reply on %(platform)s has at most %(limit)s characters; this one has %(length)d "
                      "(the signature included).") % {
                "platform": conversation.channel_account.get_platform_display(),
                "limit": reply_limit(conversation.channel_account), "length": len(final.strip())}
    else:
        if not request.htmx:
            messages.success(request, _("Reply queued."))
            return _back(conversation)
        context = _composer_context(request, conversation, sign=sign, signature=signature, queued=True)
        return _partial(request, "console/partials/conversation_composer.html", context, with_thread=conversation)
    composer = {"text": text, "sign": sign, "signature": signature, "error": error}
    if not request.htmx:
        return _page(request, conversation, status=status, composer=composer)
    return _partial(request, "console/partials/conversation_composer.html",
                    _composer_context(request, conversation, **composer), status=status)


@login_required
@require_POST
def conversation_reply_retry_action(request: HttpRequest, conversation_id: int, interaction_id: int) -> HttpResponse:
    """Send a failed (or unknown) reply again: the agent's decision, after seeing the error."""
    conversation = _get(request, conversation_id)
    try:
        reply = interaction_get_for_user(user=request.user, interaction_id=interaction_id)
    except NotFound:
        raise Http404("No such reply.") from None
    if reply.conversation_id != conversation.pk:
        raise Http404("No such reply.")
    try:
        reply_retry(interaction_id=reply.pk)
    except ServiceError as exc:
        if not request.htmx:
            messages.error(request, _message(exc))
            return _back(conversation)
        context = {**_thread_context(request, conversation), "thread_error": _message(exc)}
        return render(request, "console/partials/conversation_thread.html", context, status=exc.status_code)
    if not request.htmx:
        messages.success(request, _("The reply is queued again."))
        return _back(conversation)
    return render(request, "console/partials/conversation_thread.html", _thread_context(request, conversation))


urlpatterns = [
    path("conversations/<int:conversation_id>/", conversation_page, name="conversation"),
    path("conversations/<int:conversation_id>/thread/", conversation_thread_part, name="conversation-thread"),
    path("conversations/<int:conversation_id>/presence/", conversation_presence, name="conversation-presence"),
    path("conversations/<int:conversation_id>/assign/", conversation_assign_action, name="conversation-assign"),
    path("conversations/<int:conversation_id>/status/", conversation_status_action, name="conversation-status"),
    path("conversations/<int:conversation_id>/tags/", conversation_tag_add_action, name="conversation-tag-add"),
    path("conversations/<int:conversation_id>/tags/remove/", conversation_tag_remove_action,
         name="conversation-tag-remove"),
    path("conversations/<int:conversation_id>/notes/", conversation_note_action, name="conversation-note"),
    path("conversations/<int:conversation_id>/replies/", conversation_reply_action, name="conversation-reply"),
    path("conversations/<int:conversation_id>/replies/<int:interaction_id>/retry/", conversation_reply_retry_action,
         name="conversation-reply-retry"),
]
