import pytest

from channels.models import ChannelAccount


@pytest.fixture
def account(db) -> ChannelAccount:
    return ChannelAccount.objects.create(
        platform=ChannelAccount.Platform.X, name="@TelekomHilft", external_id="brand-1"
    )


@pytest.fixture
def other_account(db) -> ChannelAccount:
    return ChannelAccount.objects.create(platform=ChannelAccount.Platform.X, name="@OtherBrand", external_id="brand-2")
