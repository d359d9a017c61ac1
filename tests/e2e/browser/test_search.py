"""Search in the browser: the quick search box of every page finds a customer by handle and leads to the profile;
the search page's own box searches message text as the agent types."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from conversations.models import Interaction

from .conftest import morning

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from access.models import Team

    from ..conftest import CeleryWorker
    from .conftest import Console

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_quick_search_finds_a_customer_by_handle_and_opens_the_profile(
        console: Console, agent: User, team: Team, worker: CeleryWorker) -> None:
    m = morning(team)
    thomas = m.customer(m.thomas)
    console.log_in_as(agent)
    page = console.goto("/inbox/")

    box = page.get_by_role("searchbox", name="Search customers and messages")
    box.fill("@tmueller_ffm")
    box.press("Enter")

    expect(page).to_have_url(console.url("/search/?q=%40tmueller_ffm"))
    results = page.get_by_test_id("search-result")
    expect(results).to_have_count(1)
    expect(results.first).to_have_attribute("data-customer-id", str(thomas.pk))
    expect(results.first).to_contain_text("Thomas Müller")
    expect(results.first).to_contain_text("@tmueller_ffm")

    results.first.get_by_role("link", name="Thomas Müller").click()

    expect(page).to_have_url(console.url(f"/customers/{thomas.pk}/"))
    expect(page.get_by_test_id("customer-profile")).to_have_attribute("data-customer-id", str(thomas.pk))
    expect(page.get_by_role("heading", level=1)).to_have_text("Thomas Müller")
    expect(page.get_by_test_id("timeline-item")).to_have_count(
        Interaction.objects.filter(identity__customer=thomas).count())


def test_the_search_page_finds_message_text_while_the_agent_types(
        console: Console, agent: User, team: Team, worker: CeleryWorker) -> None:
    m = morning(team)
    lena_message = Interaction.objects.get(channel_account=m.x, external_id="1851000000000000004")
    console.log_in_as(agent)
    page = console.goto("/search/")
    console.mark_page()

    page.get_by_label("Name, @handle, e-mail, phone, customer number or message text").press_sequentially(
        "Router rot")

    found = page.get_by_test_id("message-result")
    expect(found).to_have_count(1)
    expect(found.first).to_have_attribute("data-interaction-id", str(lena_message.pk))
    expect(found.first.locator("mark")).to_have_text("Router rot")
    expect(page).to_have_url(console.url("/search/?q=Router%20rot"))
    assert console.still_same_page()  # htmx swapped the results in
