"""Settings read at start-up. Program settings come from the environment (`REMS_<NAME>`), are validated
when Django starts (the app's `ready()` hook), and reach `rules.current()`, which every gate reads; Celery's
time limits come from the environment and reach the Celery app. Start-up is run for real, in a subprocess:
a malformed value must stop `manage.py` itself, not only a direct call of `rules.current()`."""

from __future__ import annotations

import json

import pytest

from config.celery import app as celery_app
from registry import rules

from .processes import manage

SHOW_SETTINGS = "import json; from registry import rules; print(json.dumps(rules.current().as_dict()))"


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "REMS_AUTHORIZATION_VALIDITY_DAYS",
            "abc",
            "REMS setting authorization_validity_days='abc' is not a whole number.",
        ),
        ("REMS_COURSE_INTERVAL_MONTHS", "-1", "REMS setting course_interval_months cannot be negative."),
        ("REMS_BASELINE_LAB_MAX_AGE_DAYS", "none", "REMS setting baseline_lab_max_age_days needs a number."),
    ],
)
def test_malformed_program_setting_stops_django_start_up(name, raw, message):
    """GATE-5 records the settings in force with every decision: a value that cannot be read must stop the
    registry when it starts (`RegistryConfig.ready`), not fail each gate later."""
    result = manage("check", **{name: raw})
    assert result.returncode != 0, result.stdout
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr
    assert "System check identified" not in result.stdout


def test_well_formed_program_settings_start_and_reach_the_rules():
    """The good case: Django starts, and each REMS_* value is what `rules.current()` answers. PRG-1's
    exposure window is today only a setting; it is read like the others."""
    check = manage("check", REMS_AUTHORIZATION_VALIDITY_DAYS="5")
    assert check.returncode == 0, check.stderr
    assert "System check identified no issues" in check.stdout

    shown = manage(
        "shell",
        "-c",
        SHOW_SETTINGS,
        REMS_AUTHORIZATION_VALIDITY_DAYS="5",
        REMS_PREGNANCY_EXPOSURE_MONTHS_AFTER_COURSE="6",
        REMS_CERTIFICATION_VALIDITY_DAYS="none",
    )
    assert shown.returncode == 0, shown.stderr
    expected = {
        **rules.ProgramSettings().as_dict(),
        "authorization_validity_days": 5,
        "pregnancy_exposure_months_after_course": 6,
        "certification_validity_days": None,
    }
    assert json.loads(shown.stdout.strip().splitlines()[-1]) == expected


def test_prg_1_exposure_window_defaults_to_4_months():
    """PRG-1: contraception for 4 months after a course's last infusion (a program setting)."""
    assert rules.ProgramSettings().pregnancy_exposure_months_after_course == 4


def test_unknown_rems_variable_is_ignored(settings):
    """Only `ProgramSettings` fields are read; another REMS_* variable changes nothing."""
    settings.REMS_SETTINGS = {"not_a_setting": "x"}
    assert rules.current() == rules.ProgramSettings()


def test_celery_task_time_limits_default_to_five_and_six_minutes(settings):
    """config/celery.py reads the CELERY_ namespace: the settings are the app's task limits."""
    assert (settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT) == (300, 360)
    assert (celery_app.conf.task_soft_time_limit, celery_app.conf.task_time_limit) == (300, 360)


def test_celery_task_time_limits_follow_the_environment():
    shown = manage(
        "shell",
        "-c",
        "from config.celery import app; print(app.conf.task_soft_time_limit, app.conf.task_time_limit)",
        CELERY_TASK_SOFT_TIME_LIMIT="10",
        CELERY_TASK_TIME_LIMIT="20",
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().splitlines()[-1] == "10 20"


def test_celery_soft_time_limit_at_or_above_the_hard_limit_stops_start_up():
    result = manage("check", CELERY_TASK_SOFT_TIME_LIMIT="60", CELERY_TASK_TIME_LIMIT="60")
    assert result.returncode != 0, result.stdout
    assert "CELERY_TASK_SOFT_TIME_LIMIT must be positive and below CELERY_TASK_TIME_LIMIT." in result.stderr
