from django.urls import include, path, re_path
from rest_framework.routers import DefaultRouter

from .views.health import HealthView
from .views.participants import FacilityViewSet, MeView, PharmacyViewSet, PrescriberViewSet


class Router(DefaultRouter):
    """Trailing slashes optional (API.md): both forms route, no redirect on POST."""

    include_root_view = False

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = Router()
router.register("prescribers", PrescriberViewSet, basename="prescriber")
router.register("facilities", FacilityViewSet, basename="facility")
router.register("pharmacies", PharmacyViewSet, basename="pharmacy")

urlpatterns = [
    re_path(r"^health/?$", HealthView.as_view(), name="health"),
    re_path(r"^me/?$", MeView.as_view(), name="me"),
    path("", include(router.urls)),
]
