"""Routes of the contacts API, mounted under /api/v1/ by socialcrm/urls.py."""

from rest_framework.routers import SimpleRouter

from .views import CustomerViewSet, SocialIdentityViewSet

app_name = "contacts-api"

router = SimpleRouter()
router.register("customers", CustomerViewSet, basename="customer")
router.register("social-identities", SocialIdentityViewSet, basename="social-identity")

urlpatterns = router.urls
