"""Issue 12: the console roles "REMS administrator" and "read-only auditor" as Django groups with model
permissions (registry/console/roles.py explains them; tests/test_console_roles.py checks both agree)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

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
GROUPS = {
    "REMS administrator": (
        *(f"view_{m}" for m in VIEWABLE),
        *(f"{v}_{m}" for m in ("prescriber", "facility", "pharmacy") for v in ("add", "change")),
        "change_patient",
        "change_dispenseauthorization",
        "change_apikey",
        "change_pregnancyreport",
        "change_doblookupguard",
    ),
    "read-only auditor": tuple(f"view_{m}" for m in VIEWABLE),
}


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate); make them exist now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        perms = list(Permission.objects.filter(content_type__app_label="registry", codename__in=codenames))
        missing = set(codenames) - {p.codename for p in perms}
        if missing:
            raise RuntimeError(f"permissions missing for {name}: {sorted(missing)}")
        group.permissions.set(perms)


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUPS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0010_privacy_access"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
