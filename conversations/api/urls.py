"""Routes of the conversations API, mounted under /api/v1/ by socialcrm/urls.py."""

from rest_framework.routers import SimpleRouter

from socialcrm.api.views import ID_PATTERN

from .views import ConversationNoteViewSet, ConversationViewSet, CustomerTimelineViewSet, InteractionViewSet

app_name = "conversations-api"

router = SimpleRouter()
router.register("conversations", ConversationViewSet, basename="conversation")
router.register(rf"conversations/(?P<conversation_pk>{ID_PATTERN})/notes", ConversationNoteViewSet,
                basename="conversation-note")
router.register("interactions", InteractionViewSet, basename="interaction")
router.register(rf"customers/(?P<customer_pk>{ID_PATTERN})/timeline", CustomerTimelineViewSet,
                basename="customer-timeline")

urlpatterns = router.urls
