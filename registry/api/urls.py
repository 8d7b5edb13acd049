from django.urls import include, path, re_path
from rest_framework.routers import DefaultRouter

from .views.certifications import CertificationLookupView
from .views.health import HealthView
from .views.monitoring import MonitoringFlagViewSet, MonitoringViewSet, StatusFormViewSet
from .views.participants import FacilityViewSet, MeView, PharmacyViewSet, PrescriberViewSet
from .views.patients import LabResultBulkViewSet, PatientViewSet
from .views.pregnancy import PregnancyReportViewSet
from .views.treatment import CourseViewSet, DispenseAuthorizationViewSet, DispenseViewSet, InfusionViewSet


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
router.register("patients", PatientViewSet, basename="patient")
router.register("courses", CourseViewSet, basename="course")
router.register("infusions", InfusionViewSet, basename="infusion")
router.register("dispense-authorizations", DispenseAuthorizationViewSet, basename="dispense-authorization")
router.register("dispenses", DispenseViewSet, basename="dispense")
router.register("pregnancy-reports", PregnancyReportViewSet, basename="pregnancy-report")
# Monitoring (issue 10)
router.register("monitoring-flags", MonitoringFlagViewSet, basename="monitoring-flag")
router.register(
    r"patients/(?P<patient_pk>[0-9a-fA-F-]{36})/status-forms", StatusFormViewSet, basename="status-form"
)

urlpatterns = [
    re_path(r"^health/?$", HealthView.as_view(), name="health"),
    re_path(r"^me/?$", MeView.as_view(), name="me"),
    re_path(
        r"^lab-results/bulk/?$", LabResultBulkViewSet.as_view({"post": "create"}), name="lab-results-bulk"
    ),
    re_path(
        r"^patients/(?P<patient_pk>[0-9a-fA-F-]{36})/monitoring/?$",
        MonitoringViewSet.as_view({"get": "retrieve"}),
        name="patient-monitoring",
    ),
    path("", include(router.urls)),
    re_path(r"^certifications/(?P<npi>[^/]+)/?$", CertificationLookupView.as_view(), name="certification"),
]
