"""Enrols an administrator's second factor (issue 8 item 5; docs/access.md): prints the TOTP secret as an
`otpauth://` URL and a QR code for an authenticator app, and single-use recovery codes. Shown once."""

from __future__ import annotations

import io
from typing import Any

import segno
from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.errors import RegistryError
from registry.models import User
from registry.services.console import admin_second_factor_enrol


class Command(BaseCommand):
    help = "Give a staff administrator a TOTP device (and recovery codes) for the admin's second factor."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator app", help="a label for the device")
        parser.add_argument("--replace", action="store_true", help="remove the user's other TOTP devices")
        parser.add_argument("--recovery-codes", type=int, default=5, help="how many (0: none)")
        parser.add_argument("--no-qr", action="store_true", help="print the URL only")

    def handle(self, *args: Any, **options: Any) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user {options['username']!r}.")
        try:
            device, codes = admin_second_factor_enrol(
                user=user,
                actor=None,
                name=options["name"],
                replace=options["replace"],
                recovery_codes=options["recovery_codes"],
            )
        except RegistryError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(
            f"TOTP device {device.name!r} for {user.username!r}. Add it to an authenticator app:"
        )
        self.stdout.write(device.config_url)
        if not options["no_qr"]:
            drawn = (
                io.StringIO()
            )  # segno writes piecewise; OutputWrapper would end every piece with a newline
            segno.make(device.config_url, error="m").terminal(out=drawn, compact=True)
            self.stdout.write(drawn.getvalue(), ending="")
        if codes:
            self.stdout.write("Recovery codes (each works once in place of a code; keep them offline):")
            for code in codes:
                self.stdout.write(f"  {code}")
