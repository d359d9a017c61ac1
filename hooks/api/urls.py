"""Routes of the webhook API, mounted under /api/v1/ by socialcrm/urls.py."""

from rest_framework.routers import SimpleRouter

from socialcrm.api.views import ID_PATTERN

from .views import OutboundEventViewSet, WebhookSubscriptionViewSet

app_name = "hooks-api"

router = SimpleRouter()
router.register("webhook-subscriptions", WebhookSubscriptionViewSet, basename="webhook-subscription")
router.register(rf"webhook-subscriptions/(?P<subscription_pk>{ID_PATTERN})/deliveries", OutboundEventViewSet,
                basename="webhook-subscription-delivery")

urlpatterns = router.urls
