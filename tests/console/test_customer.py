"""The customer profile page: header, identities (link / unlink), the cross-channel timeline with its cursor, GDPR
export and erasure, visibility, bad input, escaping of hostile text, and fixed query counts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from access.models import Team
from channels.adapters.base import Author
from channels.ingest import ingest
from channels.models import ChannelAccount
from contacts.merge import customer_merge, identity_link
from contacts.models import AuditEvent, ContactPoint, Customer, DuplicateSuggestion, SocialIdentity
from conversations.models import Interaction
from tests.api.conftest import World
from tests.channels.factories import post, reply_from_us

pytestmark = pytest.mark.django_db

ConsoleFor = Callable[[User], Client]

# What a stranger on the internet may put into any text field we show.
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
SVG = "<svg onload=alert(3)>"
IFRAME = '"><iframe src=javascript:alert(4)>'
JS_URL = "javascript:alert(5)"
HOSTILE = f"{SCRIPT} {IMG} {SVG} {IFRAME}"


def assert_inert(html: str) -> None:
    """None of the hostile markup came through as markup: only escaped text, and no script link."""
    for raw in (SCRIPT, IMG, SVG, "<iframe", "onerror=alert", "onload=alert"):
        if raw.startswith("<"):
            assert raw not in html, raw
    assert "<img src=x" not in html
    assert "<svg onload" not in html
    assert "<iframe" not in html
    assert 'href="javascript:' not in html.lower()
    assert "href='javascript:" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def mastodon_identity(world: World, *, who: str = "m1", text: str = "Tröt: Router geht wieder nicht",
                      minutes: int = 5, **author: str) -> SocialIdentity:
    """Team a's customer also writes on a Mastodon account of team a (a second channel), linked to them."""
    account = ChannelAccount.objects.filter(platform="mastodon", external_id="social.example").first()
    if account is None:
        account = ChannelAccount.objects.create(platform="mastodon", name="@hilft@social.example",
                                                external_id="social.example")
        Team.objects.get(name="Team alpha").channel_accounts.add(account)
    fields = {"handle": "kunde", "display_name": "Kunde auf Mastodon", **author}
    ingest(account, [post(f"toot-{who}-{minutes}", minutes=minutes, text=text,
                          author=Author(platform="mastodon", scope="social.example", external_id=who, **fields))])
    identity = SocialIdentity.objects.get(platform="mastodon", external_id=who)
    if identity.customer_id != world.a.customer.pk:
        identity_link(identity=identity, customer=world.a.customer, actor="test-setup", reason="setup")
    return identity


def history(world: World, n: int, *, start: int = 10) -> list[int]:
    """`n` more posts by team a's customer on X, a minute apart; their ids, oldest first."""
    ingest(world.a.account, [post(f"hist-{start + i}", who=1, minutes=start + i, text=f"Nachricht {start + i}")
                             for i in range(n)])
    return list(Interaction.objects.filter(external_id__startswith="hist-").order_by("occurred_at", "id")
                .values_list("pk", flat=True))


def item_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-testid="timeline-item" data-interaction-id="(\d+)"', html)]


def next_cursor(html: str) -> str | None:
    found = re.search(r'data-testid="timeline-more" hx-get="[^"?]+\?cursor=([^"&]+)"', html)
    return found.group(1) if found else None


def merge_perm_user(world: World) -> User:
    """Team a's agent, also in the CRM staff group's merge permission but still restricted to team a."""
    from django.contrib.auth.models import Permission

    world.a.agent.user_permissions.add(Permission.objects.get(codename="merge_customers"))
    return User.objects.get(pk=world.a.agent.pk)


# --- the page -----------------------------------------------------------------------------------------------


def test_profile_shows_header_identities_contact_points_and_timeline_newest_first(world: World,
                                                                                   console_for: ConsoleFor):
    mastodon = mastodon_identity(world)
    ContactPoint.objects.create(customer=world.a.customer, kind="phone", value="+49 170 1234567",
                                normalized="+491701234567")
    Customer.objects.filter(pk=world.a.customer.pk).update(postal_address="Hauptstr. 1, 53113 Bonn", language="de",
                                                           tags=["vip"], notes="Ruft gern abends an")

    response = console_for(world.a.agent).get(f"/customers/{world.a.customer.pk}/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Kunde alpha" in html
    assert "K-alpha" in html
    assert "alpha@example.com" in html
    assert "+49 170 1234567" in html
    assert "Hauptstr. 1, 53113 Bonn" in html
    assert "Ruft gern abends an" in html
    assert ">vip<" in html
    assert html.count('data-testid="identity"') == 2
    assert f'data-identity-id="{mastodon.pk}"' in html
    assert f'data-identity-id="{world.a.identity.pk}"' in html
    toot = Interaction.objects.get(external_id__startswith="toot-")
    # Newest first across both channels: the toot (minute 5) before the X post (minute 1).
    assert item_ids(html) == [toot.pk, world.a.interaction.pk]
    assert "mastodon" in html
    assert "Tröt: Router geht wieder nicht" in html
    assert f'href="/conversations/{toot.conversation_id}/"' in html
    assert 'data-testid="timeline-more"' not in html
    # An agent may not link, unlink, merge or answer GDPR requests.
    assert 'data-testid="identity-unlink"' not in html
    assert 'data-testid="gdpr"' not in html
    assert 'name="q"' in html  # the quick search box


def test_staff_see_unlink_link_merge_and_gdpr_actions(world: World, staff: User, console_for: ConsoleFor):
    html = console_for(staff).get(f"/customers/{world.a.customer.pk}/").content.decode()
    assert 'data-testid="identity-unlink"' in html
    assert f'action="/customers/{world.a.customer.pk}/link/"' in html
    assert f'action="/customers/{world.a.customer.pk}/merge/"' in html
    assert 'data-testid="gdpr-export"' in html
    assert 'data-testid="gdpr-erase"' in html


def test_profile_lists_open_duplicate_suggestions_with_their_evidence(world: World, staff: User,
                                                                      console_for: ConsoleFor):
    other = Customer.objects.create(display_name="Kunde Alpha (alt)")
    low, high = sorted([world.a.customer.pk, other.pk])
    suggestion = DuplicateSuggestion.objects.create(
        customer_low=low, customer_high=high, score=14.2, probability=0.97, model_version="dedupe-test",
        explanation=[{"field": "email", "level": "exact", "bits": 11.5, "left": "alpha@example.com",
                      "right": "alpha@example.com", "note": ""}],
    )

    html = console_for(staff).get(f"/customers/{world.a.customer.pk}/").content.decode()

    assert f'data-suggestion-id="{suggestion.pk}"' in html
    assert "14.2" in html
    assert "97 %" in html
    assert "exact" in html
    assert (f"/customers/{world.a.customer.pk}/merge/?source={other.pk}&amp;suggestion={suggestion.pk}") in html


def test_timeline_pages_by_cursor_without_duplicates_or_gaps(world: World, console_for: ConsoleFor):
    ids = history(world, 64)
    mastodon_identity(world, minutes=30)
    expected = list(Interaction.objects.filter(identity__customer=world.a.customer, is_stub=False)
                    .order_by("-occurred_at", "-id").values_list("pk", flat=True))
    assert len(expected) == 66
    assert set(ids) < set(expected)
    client = console_for(world.a.agent)

    first = client.get(f"/customers/{world.a.customer.pk}/").content.decode()
    seen = item_ids(first)
    cursor = next_cursor(first)
    assert len(seen) == 30
    assert cursor
    # Without JavaScript the sentinel is an ordinary link to the next page.
    assert f'href="/customers/{world.a.customer.pk}/?cursor={cursor}#timeline"' in first
    pages = 1
    while cursor:
        response = client.get(f"/customers/{world.a.customer.pk}/timeline/", {"cursor": cursor},
                              HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        html = response.content.decode()
        assert "<html" not in html  # a fragment, swapped in place of the sentinel
        seen += item_ids(html)
        cursor = next_cursor(html)
        pages += 1
    assert pages == 3
    assert seen == expected  # every interaction once, newest first, none skipped


def test_older_link_without_javascript_shows_the_next_page(world: World, console_for: ConsoleFor):
    history(world, 40)
    client = console_for(world.a.agent)
    first = client.get(f"/customers/{world.a.customer.pk}/").content.decode()

    second = client.get(f"/customers/{world.a.customer.pk}/", {"cursor": next_cursor(first)}).content.decode()

    assert len(item_ids(second)) == 11
    assert not set(item_ids(first)) & set(item_ids(second))
    assert "Back to the newest messages" in second


def test_a_tombstone_redirects_to_the_survivor(world: World, staff: User, console_for: ConsoleFor):
    ingest(world.a.account, [post("dup-1", who=77, minutes=3)])
    duplicate = SocialIdentity.objects.get(external_id="u77").customer
    customer_merge(target=world.a.customer, source=duplicate, actor="test")
    client = console_for(world.a.agent)

    response = client.get(f"/customers/{duplicate.pk}/")
    partial = client.get(f"/customers/{duplicate.pk}/timeline/")

    assert response.status_code == 302
    assert response["Location"] == f"/customers/{world.a.customer.pk}/"
    assert partial.status_code == 302
    assert partial["Location"] == f"/customers/{world.a.customer.pk}/timeline/"


def test_another_teams_customer_is_not_found(world: World, console_for: ConsoleFor):
    client = console_for(world.b.agent)
    for url in (f"/customers/{world.a.customer.pk}/", f"/customers/{world.a.customer.pk}/timeline/",
                f"/customers/{world.a.customer.pk}/link/?q=user", f"/customers/{world.a.customer.pk}/erase/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Kunde alpha" not in response.content.decode()
    for url in (f"/identities/{world.a.identity.pk}/unlink/", f"/customers/{world.a.customer.pk}/export/",
                f"/customers/{world.a.customer.pk}/link/"):
        response = client.post(url, {"reason": "x", "identity": world.b.identity.pk})
        assert response.status_code == 404, url
    assert SocialIdentity.objects.get(pk=world.a.identity.pk).customer_id == world.a.customer.pk


def test_unknown_and_out_of_range_ids_are_not_found(world: World, console_for: ConsoleFor):
    client = console_for(world.a.agent)
    for url in ("/customers/999999999/", "/customers/99999999999999999999999/",
                "/customers/99999999999999999999999/timeline/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert 'data-testid="error-message"' in response.content.decode()


def test_login_is_required(world: World):
    response = Client().get(f"/customers/{world.a.customer.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("cursor", ["nonsense", "eyJvIjoidGltZWxpbmUiLCJrIjpbMSwyXX0", "%00", "x" * 2000,
                                    "eyJvIjoidGltZWxpbmUiLCJrIjpbIjIwMjYtMTEtMDJUMDk6MDA6MDArMDA6MDAiLC0xXX0"])
def test_a_bad_cursor_is_a_clear_400(world: World, console_for: ConsoleFor, cursor: str):
    client = console_for(world.a.agent)
    for url in (f"/customers/{world.a.customer.pk}/", f"/customers/{world.a.customer.pk}/timeline/"):
        response = client.get(url, {"cursor": cursor})
        assert response.status_code == 400, url
        assert "link to older messages is broken" in response.content.decode()


# --- identities ---------------------------------------------------------------------------------------------


def test_unlink_splits_the_identity_off_into_a_new_customer(world: World, staff: User, console_for: ConsoleFor):
    mastodon = mastodon_identity(world)

    response = console_for(staff).post(f"/identities/{mastodon.pk}/unlink/", {"reason": "another person"})

    assert response.status_code == 302
    assert response["Location"] == f"/customers/{world.a.customer.pk}/"
    mastodon.refresh_from_db()
    assert mastodon.customer_id != world.a.customer.pk
    assert mastodon.customer.display_name == "Kunde auf Mastodon"
    event = AuditEvent.objects.get(kind="unlink")
    assert (event.customer_id, event.source_customer_id, event.actor, event.reason) == (
        mastodon.customer_id, world.a.customer.pk, staff, "another person")


def test_link_moves_an_identity_to_the_customer(world: World, staff: User, console_for: ConsoleFor):
    ingest(world.a.account, [post("other-1", who=88, minutes=2)])
    stray = SocialIdentity.objects.get(external_id="u88")
    client = console_for(staff)

    found = client.get(f"/customers/{world.a.customer.pk}/link/", {"q": "@user88"}).content.decode()
    assert f'data-testid="link-candidate" data-identity-id="{stray.pk}"' in found
    response = client.post(f"/customers/{world.a.customer.pk}/link/", {"identity": stray.pk, "reason": "same DM"})

    assert response.status_code == 302
    assert response["Location"] == f"/customers/{world.a.customer.pk}/"
    stray.refresh_from_db()
    assert stray.customer_id == world.a.customer.pk
    assert AuditEvent.objects.filter(kind="link", customer_id=world.a.customer.pk, reason="same DM").exists()


def test_link_finds_an_identity_by_its_id(world: World, staff: User, console_for: ConsoleFor):
    html = console_for(staff).get(f"/customers/{world.a.customer.pk}/link/", {"q": str(world.b.identity.pk)})
    assert f'data-identity-id="{world.b.identity.pk}"' in html.content.decode()


@pytest.mark.parametrize(("data", "status", "message"), [
    ({"reason": ""}, 400, "Give a reason"),
    ({"reason": "   "}, 400, "Give a reason"),
    ({"reason": "x" * 2001}, 400, "too long"),
])
def test_unlink_needs_a_reason(world: World, staff: User, console_for: ConsoleFor, data: dict, status: int,
                               message: str):
    mastodon = mastodon_identity(world)
    response = console_for(staff).post(f"/identities/{mastodon.pk}/unlink/", data)
    assert response.status_code == status
    assert message in response.content.decode()
    assert SocialIdentity.objects.get(pk=mastodon.pk).customer_id == world.a.customer.pk


def test_unlinking_the_only_identity_is_refused_with_a_message(world: World, staff: User, console_for: ConsoleFor):
    response = console_for(staff).post(f"/identities/{world.a.identity.pk}/unlink/", {"reason": "test"})
    assert response.status_code == 409
    assert "only identity" in response.content.decode()


@pytest.mark.parametrize("identity", ["", "abc", "-1", "0", "99999999999999999999999"])
def test_link_with_a_bad_identity_id_is_a_400(world: World, staff: User, console_for: ConsoleFor, identity: str):
    response = console_for(staff).post(f"/customers/{world.a.customer.pk}/link/",
                                       {"identity": identity, "reason": "x"})
    assert response.status_code == 400
    assert "must be a customer or record id" in response.content.decode()


def test_link_needs_a_reason_and_refuses_an_identity_already_there(world: World, staff: User,
                                                                   console_for: ConsoleFor):
    client = console_for(staff)
    missing = client.post(f"/customers/{world.a.customer.pk}/link/", {"identity": world.b.identity.pk})
    already = client.post(f"/customers/{world.a.customer.pk}/link/", {"identity": world.a.identity.pk,
                                                                       "reason": "x"})
    assert missing.status_code == 400
    assert "Give a reason" in missing.content.decode()
    assert already.status_code == 409
    assert "belongs to this customer already" in already.content.decode()


def test_agents_without_the_merge_permission_may_not_link_or_unlink(world: World, console_for: ConsoleFor):
    mastodon = mastodon_identity(world)
    client = console_for(world.a.agent)
    assert client.post(f"/identities/{mastodon.pk}/unlink/", {"reason": "x"}).status_code == 403
    assert client.get(f"/customers/{world.a.customer.pk}/link/", {"q": "user"}).status_code == 403
    assert client.post(f"/customers/{world.a.customer.pk}/link/",
                       {"identity": mastodon.pk, "reason": "x"}).status_code == 403
    assert SocialIdentity.objects.get(pk=mastodon.pk).customer_id == world.a.customer.pk


def test_a_restricted_agent_with_the_merge_permission_links_only_within_their_view(world: World,
                                                                                   console_for: ConsoleFor):
    client = console_for(merge_perm_user(world))
    response = client.post(f"/customers/{world.a.customer.pk}/link/", {"identity": world.b.identity.pk,
                                                                        "reason": "x"})
    assert response.status_code == 404
    assert SocialIdentity.objects.get(pk=world.b.identity.pk).customer_id == world.b.customer.pk


# --- GDPR ---------------------------------------------------------------------------------------------------


def test_gdpr_export_downloads_json_for_staff_only(world: World, staff: User, console_for: ConsoleFor):
    assert console_for(world.a.agent).post(f"/customers/{world.a.customer.pk}/export/").status_code == 403
    assert console_for(world.admin).post(f"/customers/{world.a.customer.pk}/export/").status_code == 403

    response = console_for(staff).post(f"/customers/{world.a.customer.pk}/export/")

    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="customer-{world.a.customer.pk}-export.json"'
    assert response["Cache-Control"] == "no-store"
    data = json.loads(response.content)
    assert data["customer_id"] == world.a.customer.pk
    assert [i["external_id"] for i in data["identities"]] == ["u1"]
    assert AuditEvent.objects.filter(kind="export", customer_id=world.a.customer.pk, actor=staff).exists()


def test_gdpr_export_is_not_a_get(world: World, staff: User, console_for: ConsoleFor):
    assert console_for(staff).get(f"/customers/{world.a.customer.pk}/export/").status_code == 405
    assert not AuditEvent.objects.filter(kind="export").exists()


def test_gdpr_erase_needs_the_typed_confirmation_and_a_reason(world: World, staff: User, console_for: ConsoleFor):
    client = console_for(staff)
    url = f"/customers/{world.a.customer.pk}/erase/"
    page = client.get(url).content.decode()
    assert 'data-testid="gdpr-erase-confirm"' in page
    assert "K-alpha" in page

    wrong = client.post(url, {"confirm": "erase please", "reason": "Art. 17 request"})
    no_reason = client.post(url, {"confirm": "ERASE", "reason": ""})

    assert wrong.status_code == 400
    assert "Type the customer number or ERASE" in wrong.content.decode()
    assert no_reason.status_code == 400
    assert "Give a reason" in no_reason.content.decode()
    assert Customer.objects.filter(pk=world.a.customer.pk).exists()

    done = client.post(url, {"confirm": "K-alpha", "reason": "Art. 17 request, verified by e-mail"})

    assert done.status_code == 302
    assert done["Location"] == "/search/"
    assert not Customer.objects.filter(pk=world.a.customer.pk).exists()
    assert not Interaction.objects.filter(pk=world.a.interaction.pk).exists()
    assert AuditEvent.objects.get(kind="erase").reason == "Art. 17 request, verified by e-mail"
    assert client.get(f"/customers/{world.a.customer.pk}/").status_code == 404


def test_gdpr_erase_is_blocked_by_a_legal_hold(world: World, staff: User, console_for: ConsoleFor):
    Customer.objects.filter(pk=world.a.customer.pk).update(legal_hold_reason="Verfahren 12 O 345/26")
    client = console_for(staff)

    page = client.get(f"/customers/{world.a.customer.pk}/erase/").content.decode()
    response = client.post(f"/customers/{world.a.customer.pk}/erase/", {"confirm": "ERASE", "reason": "request"})

    assert 'data-testid="legal-hold"' in page
    assert "Verfahren 12 O 345/26" in page
    assert 'data-testid="gdpr-erase-confirm"' not in page
    assert response.status_code == 409
    assert "legal hold" in response.content.decode()
    assert Customer.objects.filter(pk=world.a.customer.pk).exists()


def test_gdpr_erase_is_for_staff_with_the_permission_only(world: World, console_for: ConsoleFor):
    for user in (world.a.agent, world.admin):
        client = console_for(user)
        assert client.get(f"/customers/{world.a.customer.pk}/erase/").status_code == 403
        assert client.post(f"/customers/{world.a.customer.pk}/erase/",
                           {"confirm": "ERASE", "reason": "x"}).status_code == 403
    assert Customer.objects.filter(pk=world.a.customer.pk).exists()


# --- hostile text -------------------------------------------------------------------------------------------


def hostile_customer(world: World) -> Customer:
    """Team a's customer, after strangers filled every text field we show with markup."""
    mastodon_identity(world, who="evil", text=f"Hallo {HOSTILE} {JS_URL}", minutes=9, handle=f"h{SVG}",
                      display_name=f"Name {SCRIPT}{IMG}", profile_url=JS_URL)
    ingest(world.a.account, [post("evil-x", who=1, minutes=10, text=HOSTILE,
                                  attachments=({"type": "document", "file_name": f"rechnung{IMG}.pdf",
                                                "url": JS_URL},
                                               {"type": "photo", "url": "https://cdn.example/p.jpg"}))])
    SocialIdentity.objects.filter(pk=world.a.identity.pk).update(display_name=f"X {IFRAME}",
                                                                 profile_url="data:text/html,<script>",
                                                                 avatar_url="https://pbs.example/a.jpg")
    Customer.objects.filter(pk=world.a.customer.pk).update(
        display_name=f"Kunde {SCRIPT}", notes=HOSTILE, postal_address=IMG, tags=[SVG], customer_number=SCRIPT)
    ContactPoint.objects.create(customer=world.a.customer, kind="url", value=JS_URL, normalized=JS_URL)
    return world.a.customer


def test_hostile_text_is_escaped_on_the_profile(world: World, staff: User, console_for: ConsoleFor):
    customer = hostile_customer(world)

    html = console_for(staff).get(f"/customers/{customer.pk}/").content.decode()

    assert_inert(html)
    assert "rechnung&lt;img src=x onerror=alert(2)&gt;.pdf" in html
    assert 'href="https://cdn.example/p.jpg"' in html  # a safe link stays a link
    assert 'rel="noopener noreferrer nofollow"' in html
    assert 'href="data:' not in html
    # Avatars come through the console's proxy, never from the platform's host.
    assert f'src="/avatars/{world.a.identity.pk}/"' in html
    assert "pbs.example" not in html


def test_hostile_text_is_escaped_in_the_timeline_partial_link_and_erase_pages(world: World, staff: User,
                                                                              console_for: ConsoleFor):
    customer = hostile_customer(world)
    history(world, 35, start=20)
    client = console_for(staff)
    first = client.get(f"/customers/{customer.pk}/").content.decode()
    partial = client.get(f"/customers/{customer.pk}/timeline/", {"cursor": next_cursor(first)}).content.decode()
    link = client.get(f"/customers/{customer.pk}/link/", {"q": "kunde"}).content.decode()
    erase = client.get(f"/customers/{customer.pk}/erase/").content.decode()

    assert HOSTILE.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;") in partial
    for html in (partial, link, erase):
        for raw in (SCRIPT, IMG, SVG, "<iframe"):
            assert raw not in html
        assert 'href="javascript:' not in html


# --- query counts -------------------------------------------------------------------------------------------


def _queries(client: Client, url: str, **params: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params)
    assert response.status_code == 200, response.content
    return len(captured)


def _grow(world: World, n: int) -> None:
    """Team a's customer gets more of everything the profile shows."""
    history(world, n, start=100 + n)
    for i in range(n // 10):
        mastodon_identity(world, who=f"grow-{n}-{i}", minutes=200 + i)
        ContactPoint.objects.create(customer=world.a.customer, kind="email", value=f"g{n}-{i}@example.com",
                                    normalized=f"g{n}-{i}@example.com")
        other = Customer.objects.create(display_name=f"Vielleicht {n}-{i}")
        low, high = sorted([world.a.customer.pk, other.pk])
        DuplicateSuggestion.objects.create(customer_low=low, customer_high=high, score=10 + i, probability=0.9,
                                           model_version="t", explanation=[])
        ingest(world.a.account, [post(f"merge-{n}-{i}", who=5000 + n * 10 + i, minutes=300 + i)])
        source = SocialIdentity.objects.get(external_id=f"u{5000 + n * 10 + i}").customer
        customer_merge(target=world.a.customer, source=source, actor="test")


@pytest.mark.parametrize("who", ["agent", "staff"])
def test_the_profile_and_timeline_partial_cost_a_fixed_number_of_queries(world: World, staff: User,
                                                                        console_for: ConsoleFor, who: str):
    user = world.a.agent if who == "agent" else staff
    client = console_for(user)
    url = f"/customers/{world.a.customer.pk}/"

    _grow(world, 40)
    first = client.get(url).content.decode()
    small = (_queries(client, url), _queries(client, f"{url}timeline/"),
             _queries(client, f"{url}timeline/", cursor=next_cursor(first) or ""))
    _grow(world, 120)
    first = client.get(url).content.decode()
    large = (_queries(client, url), _queries(client, f"{url}timeline/"),
             _queries(client, f"{url}timeline/", cursor=next_cursor(first) or ""))

    assert small == large
    assert max(large) <= 13



def test_a_restricted_agent_sees_only_their_channels_part_of_a_shared_customers_timeline(
        world: World, console_for: ConsoleFor):
    # The same person wrote to both teams: team b's identity is linked to team a's customer.
    identity_link(identity=world.b.identity, customer=world.a.customer, actor="test-setup", reason="setup")

    mine = console_for(world.a.agent).get(f"/customers/{world.a.customer.pk}/").content.decode()
    theirs = console_for(world.b.agent).get(f"/customers/{world.a.customer.pk}/").content.decode()

    assert item_ids(mine) == [world.a.interaction.pk]
    assert item_ids(theirs) == [world.b.interaction.pk]
    assert "Hallo von beta" not in mine
    assert "Hallo von alpha" not in theirs


def test_the_timeline_cursor_is_the_apis(world: World, console_for: ConsoleFor):
    history(world, 40)
    client = console_for(world.a.agent)  # the API accepts the console's session
    api = client.get(f"/api/v1/customers/{world.a.customer.pk}/timeline/", {"page_size": 30}).json()
    cursor = api["next"].split("cursor=", 1)[1].split("&", 1)[0]

    html = client.get(f"/customers/{world.a.customer.pk}/timeline/", {"cursor": cursor}).content.decode()

    api_next = client.get(api["next"]).json()["results"]
    assert item_ids(html) == [row["id"] for row in api_next][:30]


def test_our_replies_in_the_timeline_are_signed_by_our_channel_account(world: World, console_for: ConsoleFor):
    ingest(world.a.account, [reply_from_us("our-1", thread="alpha-1", minutes=2, text="Wir schauen nach ^AB")])
    reply = Interaction.objects.get(external_id="our-1")
    assert reply.identity_id == world.a.identity.pk  # in the customer's stream, as every reply is

    html = console_for(world.a.agent).get(f"/customers/{world.a.customer.pk}/").content.decode()

    start = html.index(f'data-interaction-id="{reply.pk}"')
    item = html[start:html.index("</li>", start)]
    assert "Wir schauen nach ^AB" in item
    assert f'<span class="timeline-author">{world.a.account.name}' in item
    assert world.a.identity.handle not in item
