"""The hardened console (issue 8 item 5): admin logins lock after repeated failures (django-axes), an
administrator's second factor is required when ADMIN_REQUIRE_OTP says so (django-otp TOTP, recovery
codes), and the admin and the API docs send a Content-Security-Policy (django-csp). The tests run with
DEBUG off, where the second factor is required by default, as in production."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from registry.client_ip import client_ip
from registry.models import AuditEvent, User
from registry.services.accounts import admin_user_ensure
from registry.services.console import RECOVERY_DEVICE_NAME, admin_second_factor_enrol

from .console import console_client
from .gate_helpers import DAY0, frozen

pytestmark = pytest.mark.django_db

PASSWORD = "a long console passphrase 42"
LOGIN = "/admin/login/"
INDEX = "/admin/"


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """DEBUG off serves static names through whitenoise's manifest, which only `collectstatic` writes."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def clock():
    with frozen(DAY0) as traveller:
        yield traveller


@pytest.fixture
def operator(clock) -> User:
    user = admin_user_ensure(username="console-operator")
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    return user


@pytest.fixture
def device(operator) -> TOTPDevice:
    enrolled, _ = admin_second_factor_enrol(user=operator, actor=None, recovery_codes=0)
    return enrolled


def code_now(device: TOTPDevice) -> str:
    """The authenticator app's current code for `device`."""
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def login(client: Client, username: str, password: str, token: str = "", device: Any = None) -> Any:
    """The admin login form. With the second factor, django-otp wants the device named (its select lists
    the user's devices once the password is right): the authenticator app, or the recovery codes."""
    data = {"username": username, "password": password, "otp_token": token, "next": INDEX}
    if device is not None:
        data["otp_device"] = device.persistent_id
    return client.post(LOGIN, data)


def in_console(client: Client) -> bool:
    response = client.get(INDEX)
    return response.status_code == 200


# --- Second factor (django-otp) ----------------------------------------------------------------------------


def test_the_second_factor_is_required_outside_debug_by_default(settings):
    assert settings.DEBUG is False
    assert settings.ADMIN_REQUIRE_OTP is True


def test_password_and_current_code_enter_the_console(operator, device):
    client = Client()
    first = login(client, operator.username, PASSWORD)  # the password is right: the page lists devices
    assert f'<option value="{device.persistent_id}">' in first.content.decode()
    response = login(client, operator.username, PASSWORD, code_now(device), device)

    assert (response.status_code, response["Location"]) == (302, INDEX)
    assert in_console(client)


def test_password_alone_does_not_enter_when_the_second_factor_is_required(operator, device):
    client = Client()
    response = login(client, operator.username, PASSWORD)

    assert response.status_code == 200  # the login page again, asking for the code
    assert "Please enter your OTP token." in response.content.decode()
    assert not in_console(client)


def test_a_wrong_code_does_not_enter(operator, device):
    client = Client()
    wrong = f"{(int(code_now(device)) + 1) % 1_000_000:06d}"
    response = login(client, operator.username, PASSWORD, wrong, device)

    assert response.status_code == 200
    assert "Invalid token" in response.content.decode()
    assert not in_console(client)


def test_a_staff_administrator_without_a_device_cannot_enter(operator):
    client = Client()
    response = login(client, operator.username, PASSWORD, "123456")

    assert response.status_code == 200
    assert not in_console(client)


def test_a_password_session_without_the_second_factor_is_sent_to_the_login_page(operator, device):
    client = Client()
    client.force_login(operator)  # authenticated, not verified by a device

    response = client.get(INDEX)

    assert (response.status_code, response["Location"]) == (302, f"{LOGIN}?next={INDEX}")


def test_a_recovery_code_works_once(operator):
    _, codes = admin_second_factor_enrol(user=operator, actor=None, recovery_codes=2)
    assert len(codes) == 2
    assert len(set(codes)) == 2
    recovery = StaticDevice.objects.get(user=operator, name=RECOVERY_DEVICE_NAME)

    first = Client()
    assert login(first, operator.username, PASSWORD, codes[0], recovery).status_code == 302
    assert in_console(first)

    again = Client()
    assert login(again, operator.username, PASSWORD, codes[0], recovery).status_code == 200
    assert not in_console(again)


def test_without_the_setting_the_password_is_enough_as_in_the_quick_start(settings, operator):
    """`make run` (DEBUG on) leaves ADMIN_REQUIRE_OTP off: the demo admin logs in with the printed
    password."""
    settings.ADMIN_REQUIRE_OTP = False
    client = Client()

    page = client.get(LOGIN)
    assert 'name="otp_token"' not in page.content.decode()
    response = login(client, operator.username, PASSWORD)

    assert (response.status_code, response["Location"]) == (302, INDEX)
    assert in_console(client)


def test_with_the_setting_the_login_page_asks_for_the_code(settings):
    assert 'name="otp_token"' in Client().get(LOGIN).content.decode()


def test_enrolment_is_audited_without_the_secret_and_replace_removes_old_devices(operator, device):
    replacement, codes = admin_second_factor_enrol(user=operator, actor=None, replace=True, recovery_codes=3)

    assert list(TOTPDevice.objects.filter(user=operator)) == [replacement]
    events = AuditEvent.objects.filter(action="user.second_factor_enrol", subject_id=operator.pk)
    assert sorted((e.changes for e in events), key=lambda c: c["replaced_devices"]) == [
        {"device": "authenticator app", "replaced_devices": 0, "recovery_codes": 0},
        {"device": "authenticator app", "replaced_devices": 1, "recovery_codes": 3},
    ]
    assert replacement.key not in str([e.changes for e in events])
    assert not any(code in str([e.changes for e in events]) for code in codes)


def test_only_staff_administrators_get_a_second_factor(prescriber):
    with pytest.raises(CommandError, match="is not a staff administrator"):
        call_command("admin_totp_add", prescriber.user.username)
    assert not TOTPDevice.objects.exists()


def test_admin_totp_add_prints_the_url_and_recovery_codes(operator, capsys):
    call_command("admin_totp_add", operator.username, "--recovery-codes", "2", "--no-qr")

    out = capsys.readouterr().out
    device = TOTPDevice.objects.get(user=operator)
    assert device.confirmed
    assert device.config_url in out
    assert out.count("\n  ") == 2  # two indented recovery codes
    assert "issuer=LEMTRADA%20REMS%20registry" in device.config_url


def test_no_administrator_reads_another_s_secret_in_the_admin(operator, device):
    """OTP_ADMIN_HIDE_SENSITIVE_DATA: the device page shows no key and no QR code."""
    other = console_client(admin_user_ensure(username="second-admin"))

    page = other.get(reverse("admin:otp_totp_totpdevice_change", args=[device.pk]))
    qr = other.get(reverse("admin:otp_totp_totpdevice_config", args=[device.pk]))

    assert page.status_code == 200
    assert device.key not in page.content.decode()
    assert qr.status_code == 403


# --- Login lockout (django-axes) ---------------------------------------------------------------------------


def test_five_failed_logins_lock_the_account_even_with_the_right_password(operator, device):
    for _ in range(4):
        assert login(Client(), operator.username, "wrong password").status_code == 200
    assert login(Client(), operator.username, "wrong password").status_code == 429  # the 5th locks

    locked = login(Client(), operator.username, PASSWORD, code_now(device), device)

    assert locked.status_code == 429
    assert "Login locked" in locked.content.decode()
    # The try while locked counts as a failure too (and restarts the cool-off: guessing on keeps it locked).
    assert AccessAttempt.objects.filter(username=operator.username).get().failures_since_start == 6


def test_four_failures_then_a_success_reset_the_count(operator, device, clock):
    for _ in range(4):
        login(Client(), operator.username, "wrong password")
    client = Client()
    assert login(client, operator.username, PASSWORD, code_now(device), device).status_code == 302

    assert not AccessAttempt.objects.filter(username=operator.username).exists()
    login(Client(), operator.username, "wrong password")
    assert login(Client(), operator.username, "wrong password").status_code == 200  # not locked


def test_one_address_guessing_many_usernames_is_locked_too(operator, device):
    for n in range(5):
        login(Client(), f"someone-{n}", "guess")

    locked = login(Client(), operator.username, PASSWORD, code_now(device), device)

    assert locked.status_code == 429


def test_the_lock_ends_after_the_cool_off(operator, device, clock, settings):
    assert settings.AXES_COOLOFF_TIME == 0.5  # hours: ADMIN_LOGIN_LOCKOUT_MINUTES=30
    for _ in range(5):
        login(Client(), operator.username, "wrong password")
    assert login(Client(), operator.username, PASSWORD, code_now(device), device).status_code == 429

    clock.shift(dt.timedelta(minutes=31))
    client = Client()

    assert login(client, operator.username, PASSWORD, code_now(device), device).status_code == 302
    assert in_console(client)


def test_an_administrator_lifts_a_lock_early(operator, device):
    for _ in range(5):
        login(Client(), operator.username, "wrong password")

    call_command("axes_reset_username", operator.username)

    assert login(Client(), operator.username, PASSWORD, code_now(device), device).status_code == 302


# --- One client address for every limit ------------------------------------------------------------------


def _request(remote: str, forwarded: str | None = None) -> Any:
    from django.test import RequestFactory

    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_trusted_proxies_x_forwarded_for_is_ignored(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(_request("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


def test_behind_one_proxy_the_address_it_saw_is_the_client(settings):
    settings.TRUSTED_PROXY_COUNT = 1
    # The client forged the first entry; the proxy appended the address it really saw.
    assert client_ip(_request("10.0.0.2", "198.51.100.66, 203.0.113.9")) == "203.0.113.9"
    assert client_ip(_request("10.0.0.2")) == "10.0.0.2"


# --- Content-Security-Policy (django-csp) ------------------------------------------------------------------


def _policy(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in (p.strip() for p in header.split(";")) if d}


def test_the_admin_sends_a_policy_that_runs_no_inline_or_foreign_script():
    policy = _policy(Client().get(LOGIN))

    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]


def test_the_api_docs_send_the_policy_and_their_inline_style_carries_its_nonce():
    response = Client().get("/api/docs/")
    html = response.content.decode()
    policy = _policy(response)

    assert response.status_code == 200
    assert policy["script-src"] == ["'self'"]
    (nonce,) = re.findall(r'<style nonce="([^"]+)">', html)
    assert policy["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts
    assert all("src=" in attrs for attrs in scripts)


def test_the_api_docs_init_script_is_served_as_a_file():
    response = Client().get("/api/docs/?script=")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in response.content.decode()


def test_the_api_answers_carry_the_policy_too(prescriber):
    assert _policy(prescriber.get("/api/v1/me"))["default-src"] == ["'none'"]
