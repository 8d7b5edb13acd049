"""For `make run` only: gives the demo admin a fresh random password for the Django admin and prints it.
Refuses to run unless DEBUG is on, so no production admin gets a password printed to a terminal."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from registry.services.accounts import admin_user_ensure
from registry.services.audit import audit_record


class Command(BaseCommand):
    help = "DEBUG only: set a fresh random Django-admin password for the demo admin and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_admin_login only runs with DEBUG=true (the local quick start).")
        user = admin_user_ensure(username=options["username"])
        password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user.set_password(password)
            user.save(update_fields=["password"])
            audit_record(
                actor=None, action="user.password_set", subject=user, changes={"by": "demo_admin_login"}
            )
        self.stdout.write(
            f"Django admin: http://127.0.0.1:8000/admin/  user: {user.username}  password: {password}"
        )
