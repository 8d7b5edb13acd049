"""The console in a real browser (issue 12 item 5): the demo program behind a live server, headless
Chromium (Debian's `chromium` and `chromium-driver`, driven by selenium) logs into the admin, opens the
dashboard, follows the blocked-patients figure to the overdue patient, opens the patient page and
suspends the prescriber of record with a reason. Screenshots go to var/screenshots/ (ignored by git).

CI installs chromium (.ci/run); on a machine without it the test is skipped and says so."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from registry.console.roles import roles_sync
from registry.models import AuditEvent, CertificationStatus, Patient, Prescriber
from registry.services.accounts import admin_user_ensure

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
PASSWORD = "browser-test-password"

pytestmark = [
    # Skipped only off CI: in CI (.ci/run installs chromium) a missing browser fails the test.
    pytest.mark.skipif(
        (CHROMIUM is None or CHROMEDRIVER is None) and os.environ.get("CI") != "true",
        reason="Debian's chromium and chromium-driver are not installed (apt-get install -y chromium "
        "chromium-driver; CI installs them)",
    ),
    # The live server reads the rows from its own thread: committed rows, flushed afterwards.
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _console_roles(transactional_db: None) -> None:
    """The console groups the migration creates, again after an earlier transactional test's flush (a
    serialized rollback would collide with the content types that flush re-creates)."""
    roles_sync()


@pytest.fixture(autouse=True)
def _plain_static_storage(settings: Any) -> None:
    """Static names unhashed (no collectstatic in the tests), and the quick start's login: password only
    (`make run` runs with DEBUG, where ADMIN_REQUIRE_OTP is off; the second factor's login has its own
    tests in tests/test_console.py)."""
    settings.ADMIN_REQUIRE_OTP = False
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--window-size=1400,1800",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def shot(driver: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_dashboard_to_overdue_patient_and_suspend_the_prescriber(live_server, browser):
    from selenium.webdriver.common.by import By

    call_command("seed_demo", verbosity=0)
    admin = admin_user_ensure(username="admin")
    admin.set_password(PASSWORD)
    admin.save(update_fields=["password"])
    otto = Patient.objects.get(last_name="Overdue")

    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    browser.find_element(By.ID, "dashboard-link").click()

    assert browser.find_element(By.TAG_NAME, "h1").text == "Program dashboard"
    panels = browser.find_elements(By.CSS_SELECTOR, "section.panel")
    assert {p.get_attribute("id") for p in panels} >= {
        "panel-participants",
        "panel-patients",
        "panel-authorizations",
        "panel-flags",
        "panel-compliance",
        "panel-pregnancies",
    }
    assert len(browser.find_elements(By.CSS_SELECTOR, "section.panel svg rect")) > 20
    assert shot(browser, "dashboard").stat().st_size > 10_000

    # Click 1: the figure behind the blocked patients (the flags panel's figures are open to read).
    flags = browser.find_element(By.ID, "panel-flags")
    flags.find_element(By.TAG_NAME, "summary").click()
    flags.find_element(
        By.XPATH, ".//tr[td[1][normalize-space()='Patients blocked by overdue monitoring']]//a"
    ).click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert any(otto.rems_patient_id in row.text for row in rows)
    shot(browser, "blocked-patients")

    # Click 2: the patient page.
    row = next(r for r in rows if otto.rems_patient_id in r.text)
    row.find_element(By.LINK_TEXT, "open").click()
    assert otto.rems_patient_id in browser.find_element(By.TAG_NAME, "h1").text
    assert browser.find_element(By.ID, "monitoring-blocking").is_displayed()
    assert "monitoring_overdue" in browser.find_element(By.ID, "section-status").text
    assert shot(browser, "patient-page").stat().st_size > 10_000

    # Suspend the prescriber of record, with a reason.
    browser.find_element(By.ID, "prescriber-suspend").click()
    assert "reason required" in browser.find_element(By.TAG_NAME, "h1").text
    browser.find_element(By.NAME, "reason").send_keys("Browser test: license under review")
    browser.find_element(By.CSS_SELECTOR, "form input[type=submit]").click()
    assert "Suspend: 1 done." in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    shot(browser, "prescriber-suspended")

    prescriber = Prescriber.objects.get(pk=otto.prescriber_id)
    assert (prescriber.status, prescriber.status_reason) == (
        CertificationStatus.SUSPENDED,
        "Browser test: license under review",
    )
    [event] = AuditEvent.objects.filter(subject_id=prescriber.pk, action="prescriber.suspend")
    assert (event.actor, event.changes["reason"]) == (admin, "Browser test: license under review")
