"""The REMS console's admin site (issue 8 item 5, issue 12): Django's admin, for users with role `admin`
only (a participant's user never gets in, whatever its flags), asking administrators for a second factor
when `ADMIN_REQUIRE_OTP` says so, with the program dashboard off its index (registry/console/).

With the setting on, the login page asks for a one-time code after the password (django-otp's admin form:
a TOTP code from an authenticator app, or a single-use recovery code), and only a staff user whom one of
its confirmed devices verified in this session may use the admin; anyone else is sent to the login page.
The setting is read on every request, so it can be switched without restarting code paths. Repeated
password failures lock the login (django-axes, config/settings.py); repeated wrong codes slow the device
down (django-otp's per-device throttling).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest
from django.urls import URLPattern, URLResolver, path
from django_otp.admin import OTPAdminAuthenticationForm

OTP_LOGIN_TEMPLATE = "otp/admin111/login.html"  # django-otp's admin login page with the code field


def otp_required() -> bool:
    return bool(getattr(settings, "ADMIN_REQUIRE_OTP", False))


class RegistryAdminSite(admin.AdminSite):
    site_header = "LEMTRADA REMS registry"
    site_title = "REMS registry admin"
    index_title = "REMS administration"
    index_template = "admin/registry/console/index.html"

    def has_permission(self, request: HttpRequest) -> bool:
        """Staff, active and role `admin`, and, when the second factor is required, verified by a device in
        this session (django_otp.middleware.OTPMiddleware sets `is_verified`)."""
        from registry.models import Role

        if not super().has_permission(request) or getattr(request.user, "role", None) != Role.ADMIN:
            return False
        if not otp_required():
            return True
        is_verified = getattr(request.user, "is_verified", None)
        return bool(is_verified is not None and is_verified())

    # Django's login view reads these two attributes on each login; as properties they follow the setting
    # per request, with nothing mutated on the shared site. They are not assignable: the setting decides.
    @property
    def login_form(self) -> type[AdminAuthenticationForm]:
        return OTPAdminAuthenticationForm if otp_required() else AdminAuthenticationForm

    @login_form.setter
    def login_form(self, value: object) -> None:
        raise AttributeError("login_form follows ADMIN_REQUIRE_OTP")

    @property
    def login_template(self) -> str | None:
        return OTP_LOGIN_TEMPLATE if otp_required() else None

    @login_template.setter
    def login_template(self, value: object) -> None:
        raise AttributeError("login_template follows ADMIN_REQUIRE_OTP")

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from registry.console.views import dashboard_view

        return [
            path("dashboard/", self.admin_view(dashboard_view), name="dashboard"),
            *super().get_urls(),
        ]
