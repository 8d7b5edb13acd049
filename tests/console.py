"""A logged-in Django-admin client, the way an administrator arrives when the second factor is required
(ADMIN_REQUIRE_OTP, on in the tests as in production): password session plus a confirmed TOTP device
that verified it (django-otp keeps the device's id in the session)."""

from __future__ import annotations

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from registry.models import User


def console_login(client: Client, user: User) -> Client:
    """Logs `client` in as `user` (a new session) verified by the user's TOTP device (created if none)."""
    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="test authenticator", confirmed=True
    )
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def console_client(user: User) -> Client:
    return console_login(Client(), user)
