"""The admin site of the console: only active staff users with role `admin` get in (a participant's user
never does, whatever its flags), and the program dashboard hangs off the index."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver, path


class RegistryAdminSite(admin.AdminSite):
    site_header = "LEMTRADA REMS registry"
    site_title = "REMS registry admin"
    index_title = "REMS administration"
    index_template = "admin/registry/console/index.html"

    def has_permission(self, request: HttpRequest) -> bool:
        from registry.models import Role

        user: Any = request.user
        return bool(user.is_active and user.is_staff and getattr(user, "role", None) == Role.ADMIN)

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from .views import dashboard_view

        return [
            path("dashboard/", self.admin_view(dashboard_view), name="dashboard"),
            *super().get_urls(),
        ]
