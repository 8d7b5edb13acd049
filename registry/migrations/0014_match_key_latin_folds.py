from django.db import migrations


def rekey(apps, schema_editor):
    """ACT-6: the match key now folds the Latin letters Unicode does not decompose (ø, ł, æ, ...); the
    stored keys of patients whose names hold one are written again, so the duplicate check and the NCPDP
    demographics match find them. Patients whose key does not change are not touched."""
    from registry.matching import patient_match_key

    Patient = apps.get_model("registry", "Patient")
    changed = []
    for patient in Patient.objects.only("pk", "first_name", "last_name", "match_key").iterator(
        chunk_size=2000
    ):
        key = patient_match_key(patient.first_name, patient.last_name)
        if key != patient.match_key:
            patient.match_key = key
            changed.append(patient)
    Patient.objects.bulk_update(changed, ["match_key"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0013_digest_run_index"),
    ]

    operations = [migrations.RunPython(rekey, migrations.RunPython.noop)]
