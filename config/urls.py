from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from registry.api.exceptions import json_bad_request, json_not_found, json_server_error

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("registry.api.urls")),
    path("api/", include("registry.api.standards_urls")),  # NCPDP SCRIPT and FHIR (issue 14)
    # The published contract: public, static, no patient data; not counted against a rate limit (the
    # limit's store is the database, which the schema must not need).
    path("api/schema/", SpectacularAPIView.as_view(throttle_classes=[]), name="schema"),
    # The split view serves Swagger UI's init script as a file: no inline script under the CSP.
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="schema", template_name="registry/swagger_ui.html", throttle_classes=[]
        ),
        name="swagger-ui",
    ),
    # Unknown API paths answer the JSON error contract even with DEBUG on.
    re_path(r"^api/", csrf_exempt(json_not_found)),
]

handler400 = json_bad_request
handler404 = json_not_found
handler500 = json_server_error
