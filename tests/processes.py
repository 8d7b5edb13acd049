"""Run `manage.py` in a fresh process: for what only a real start-up shows (settings read from the
environment, the app's `ready()` hook, a database that is not there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python manage.py <args>` with this test run's environment, minus any REMS_* variable, plus `env`
    (the database defaults to an in-memory SQLite one)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REMS_")}
    base.update({"DATABASE_URL": "sqlite:///:memory:", "DJANGO_SETTINGS_MODULE": "config.settings", **env})
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
