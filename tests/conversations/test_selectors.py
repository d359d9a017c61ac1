import dataclasses

import pytest

from channels.ingest import ingest
from contacts.models import SocialIdentity
from conversations.selectors import customer_timeline
from tests.channels.factories import author, edit, post

pytestmark = pytest.mark.django_db


def test_timeline_merges_identities_newest_first_and_pages_by_keyset(account, other_account):
    mastodon_user = dataclasses.replace(author(1), platform="mastodon", scope="mastodon.social", external_id="109")
    ingest(account, [post(f"x{i}", who=1, minutes=2 * i) for i in range(5)] + [post("other", who=2, minutes=99)])
    ingest(other_account, [post(f"m{i}", author=mastodon_user, minutes=2 * i + 1) for i in range(5)])
    ingest(account, [edit("ghost", minutes=50, text="edit of something never seen")])
    x_identity = SocialIdentity.objects.get(platform="x", external_id="u1")
    mastodon_identity = SocialIdentity.objects.get(platform="mastodon")
    mastodon_identity.customer = x_identity.customer  # as a merge would do
    mastodon_identity.save()

    first = customer_timeline(customer_id=x_identity.customer_id, limit=4)
    rest = customer_timeline(customer_id=x_identity.customer_id, limit=50,
                             before=(first[-1].occurred_at, first[-1].pk))

    assert [i.external_id for i in first] == ["m4", "x4", "m3", "x3"]
    assert [i.external_id for i in rest] == ["m2", "x2", "m1", "x1", "m0", "x0"]


def test_timeline_page_costs_fixed_queries(account, django_assert_num_queries):
    ingest(account, [post(f"x{i}", who=1, minutes=i) for i in range(30)])
    customer_id = SocialIdentity.objects.get(external_id="u1").customer_id

    with django_assert_num_queries(1):  # the page: the merge of the identities' streams and its rows
        page = customer_timeline(customer_id=customer_id, limit=20)
        assert {i.channel_account_id for i in page} == {account.pk}
        assert [i.external_id for i in page] == [f"x{i}" for i in range(29, 9, -1)]
