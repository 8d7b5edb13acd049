"""Console roles for administrators who are not superusers: Django groups holding model permissions.

Every console user is a staff user with role `admin` (the site refuses any other role). A superuser may do
everything; anyone else may do exactly what their group's permissions allow:

- **REMS administrator** views every record, registers and edits participants, and runs the lifecycle
  actions (participant certify/suspend/reinstate/deactivate, patient suspend/reinstate/discontinue,
  authorization revoke, API key revoke), each through the same service as the API, and records
  pregnancy outcomes and follow-up (PRG-3) through the pregnancy service.
- **read-only auditor** views every record, the dashboard and the patient page, and changes nothing.

Nobody deletes anything (records of a REMS are deactivated, never deleted: the admin refuses deletion
whatever the permissions). Migration 0011 creates the groups with these permissions; `roles_sync` repairs
them (idempotent), and the tests assert that the migration and this table agree.
"""

from __future__ import annotations

REMS_ADMINISTRATOR = "REMS administrator"
READ_ONLY_AUDITOR = "read-only auditor"

# Every registry model a console user may look at.
VIEWABLE = (
    "prescriber",
    "facility",
    "pharmacy",
    "patient",
    "screening",
    "labresult",
    "contraindication",
    "course",
    "infusion",
    "decision",
    "dispenseauthorization",
    "dispense",
    "auditevent",
    "apikey",
    "user",
    "pregnancyreport",
    "pregnancyreminder",
    "ncpdpmessage",
    "monitoringflag",
    "monitoringschedule",
    "statusform",
    "sweeprun",
    "digest",
    "digestline",
    "accesslogentry",
    "doblookupguard",
)

# (app_label, codename) per group. `change_*` on a record whose fields are all read-only in the console
# (patient, authorization, API key) is what unlocks that model's lifecycle actions, nothing else.
GROUP_PERMISSIONS: dict[str, tuple[tuple[str, str], ...]] = {
    REMS_ADMINISTRATOR: (
        *(("registry", f"view_{model}") for model in VIEWABLE),
        *(
            ("registry", f"{verb}_{model}")
            for model in ("prescriber", "facility", "pharmacy")
            for verb in ("add", "change")
        ),
        ("registry", "change_patient"),
        ("registry", "change_dispenseauthorization"),
        ("registry", "change_apikey"),
        ("registry", "change_pregnancyreport"),
        ("registry", "change_doblookupguard"),
    ),
    READ_ONLY_AUDITOR: tuple(("registry", f"view_{model}") for model in VIEWABLE),
}


def roles_sync() -> dict[str, int]:
    """Makes each console group hold exactly its permissions in `GROUP_PERMISSIONS` (idempotent; run by
    `manage.py roles_sync` after a model is added). Returns the number of permissions per group."""
    from django.contrib.auth.models import Group, Permission
    from django.db import transaction

    out: dict[str, int] = {}
    with transaction.atomic():
        for name, perms in GROUP_PERMISSIONS.items():
            group, _ = Group.objects.get_or_create(name=name)
            codenames = [codename for _, codename in perms]
            found = list(
                Permission.objects.filter(content_type__app_label="registry", codename__in=codenames)
            )
            missing = sorted(set(codenames) - {p.codename for p in found})
            if missing:
                raise LookupError(f"permissions missing for {name}: {missing} (run migrate first)")
            group.permissions.set(found)
            out[name] = len(found)
    return out
