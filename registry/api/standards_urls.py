"""Standards endpoints outside /api/v1/ (API.md "Standards endpoints"): NCPDP SCRIPT and FHIR."""

from django.urls import re_path

from .views.fhir import RemsEtasuView
from .views.ncpdp import NcpdpRemsView

urlpatterns = [
    re_path(r"^ncpdp/rems/?$", NcpdpRemsView.as_view(), name="ncpdp-rems"),
    re_path(r"^fhir/GuidanceResponse/\$rems-etasu/?$", RemsEtasuView.as_view(), name="fhir-rems-etasu"),
]
