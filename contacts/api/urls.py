"""Routes of the contacts API, mounted under /api/v1/ by socialcrm/urls.py."""

from rest_framework.routers import SimpleRouter

from .views import (
    AuditEventViewSet,
    CustomerViewSet,
    DuplicateSuggestionViewSet,
    MergeViewSet,
    SocialIdentityViewSet,
)

app_name = "contacts-api"

router = SimpleRouter()
router.register("customers", CustomerViewSet, basename="customer")
router.register("social-identities", SocialIdentityViewSet, basename="social-identity")
router.register("merges", MergeViewSet, basename="merge")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
router.register("duplicate-suggestions", DuplicateSuggestionViewSet, basename="duplicate-suggestion")

urlpatterns = router.urls
