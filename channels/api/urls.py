"""Routes of the channels API, mounted under /api/v1/ by socialcrm/urls.py."""

from rest_framework.routers import SimpleRouter

from socialcrm.api.views import ID_PATTERN

from .views import ChannelAccountViewSet, ConversationReplyViewSet, ReplyRetryViewSet, WebhookDeliveryViewSet

app_name = "channels-api"

router = SimpleRouter()
router.register("channel-accounts", ChannelAccountViewSet, basename="channel-account")
router.register("webhook-deliveries", WebhookDeliveryViewSet, basename="webhook-delivery")
router.register(rf"conversations/(?P<conversation_pk>{ID_PATTERN})/replies", ConversationReplyViewSet,
                basename="conversation-reply")
router.register(rf"interactions/(?P<interaction_pk>{ID_PATTERN})/retry", ReplyRetryViewSet, basename="reply-retry")

urlpatterns = router.urls
