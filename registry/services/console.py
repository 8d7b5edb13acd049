"""The hardened console (issue 8 item 5): enrolling an administrator's second factor.

With `ADMIN_REQUIRE_OTP` on, an administrator enters the admin only with a one-time code from a confirmed
device (registry/admin_site.py). The first device cannot be enrolled through the admin it guards, and no
administrator can read another's secret there (`OTP_ADMIN_HIDE_SENSITIVE_DATA`), so enrolment runs here,
from `manage.py admin_totp_add` on the server; the secret is shown once to the person enrolling.
"""

from __future__ import annotations

from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from registry.errors import Conflict, ErrorCode
from registry.models import Role, User

from .audit import audit_record

RECOVERY_DEVICE_NAME = "recovery codes"


def admin_second_factor_enrol(
    *,
    user: User,
    actor: User | None,
    name: str = "authenticator app",
    replace: bool = False,
    recovery_codes: int = 5,
) -> tuple[TOTPDevice, list[str]]:
    """A confirmed TOTP device for the staff administrator `user`, plus `recovery_codes` single-use codes
    (a new set replaces any earlier one). With `replace`, the user's other TOTP devices are removed (a
    lost phone). Audited without the secret. 409 `user_role_conflict` for a user who is not a staff
    administrator: participants never use the console."""
    if user.role != Role.ADMIN or not user.is_staff:
        raise Conflict(
            f"User {user.username!r} is not a staff administrator.", code=ErrorCode.USER_ROLE_CONFLICT
        )
    with transaction.atomic():
        removed = 0
        if replace:
            removed, _ = TOTPDevice.objects.filter(user=user).delete()
        device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
        codes: list[str] = []
        if recovery_codes > 0:
            static, _ = StaticDevice.objects.get_or_create(
                user=user, name=RECOVERY_DEVICE_NAME, defaults={"confirmed": True}
            )
            static.token_set.all().delete()
            codes = [StaticToken.random_token() for _ in range(recovery_codes)]
            StaticToken.objects.bulk_create([StaticToken(device=static, token=code) for code in codes])
        audit_record(
            actor=actor,
            action="user.second_factor_enrol",
            subject=user,
            changes={"device": name, "replaced_devices": removed, "recovery_codes": len(codes)},
        )
    return device, codes
