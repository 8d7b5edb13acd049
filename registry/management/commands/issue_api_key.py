"""API.md "Bootstrap": `issue_api_key --admin <username>` creates the admin if missing and prints a new key
as the last line of standard output."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from registry.services.accounts import admin_user_ensure, api_key_issue


class Command(BaseCommand):
    help = "Create the admin user if missing and print a new API key for it (last line of output)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--admin", required=True, metavar="USERNAME", help="admin username")
        parser.add_argument("--name", default="bootstrap", help="a label for the key")

    def handle(self, *args: Any, **options: Any) -> None:
        user = admin_user_ensure(username=options["admin"])
        key, raw = api_key_issue(user=user, actor=None, name=options["name"])
        self.stderr.write(f"API key {key.prefix}… issued for admin {user.username!r}. It is shown once:")
        self.stdout.write(raw)
