"""The API side of the access log (registry/services/access_log.py): a viewset mixin that logs the
patients a successful read returned. A view opts in by listing the mixin first among its bases; it then
logs, for GET and HEAD answers in 2xx, the patient of every object `get_object()` (or `accessed()`)
returned and of every object on a list page (`paginate_queryset` in the `list` action), in one insert.
Objects are patients, or carry a `patient_id` (courses, authorizations)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response

from registry.models import Patient
from registry.services.access_log import access_log_record

READ_METHODS = ("GET", "HEAD")


def _patient_id(obj: Any) -> Any:
    return obj.pk if isinstance(obj, Patient) else getattr(obj, "patient_id", None)


def _route(request: Request) -> str:
    """`GET /api/v1/patients/{pk}/lab-results`: the route read, ids put back as their names."""
    path = request.path.rstrip("/")
    match = request.resolver_match
    for name, value in match.kwargs.items() if match is not None else ():
        path = path.replace(str(value), "{" + name + "}")
    return f"{request.method} {path}"


class AccessLoggedMixin:
    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self._accessed_patient_ids: list[Any] = []
        super().initial(request, *args, **kwargs)  # type: ignore[misc]

    def get_object(self) -> Any:
        return self.accessed(super().get_object())  # type: ignore[misc]

    def accessed(self, obj: Any) -> Any:
        """Notes that the answer shows `obj`'s patient (for a view that finds its record without
        `get_object`); returns `obj`."""
        self.__dict__.setdefault("_accessed_patient_ids", []).append(_patient_id(obj))
        return obj

    def paginate_queryset(self, queryset: Any) -> Any:
        page = super().paginate_queryset(queryset)  # type: ignore[misc]
        if page is not None and getattr(self, "action", None) == "list":
            self.__dict__.setdefault("_accessed_patient_ids", []).extend(_patient_id(o) for o in page)
        return page

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        ids = self.__dict__.get("_accessed_patient_ids")
        if ids and request.method in READ_METHODS and 200 <= response.status_code < 300:
            access_log_record(user=request.user, patient_ids=ids, endpoint=_route(request))  # type: ignore[arg-type]
        return response
