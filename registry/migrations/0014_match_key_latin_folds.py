import unicodedata

from django.db import migrations
from django.db.models import Q

# Both normalizations are frozen here, so this migration means the same whatever registry/matching.py
# becomes: `_key(..., folds=_FOLDS)` is the key from this migration on, `_key(..., folds=None)` the one
# before it (the reverse writes that back, so older code finds its own keys after a rollback).
_FOLDS = str.maketrans(
    {
        "ø": "o",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "ħ": "h",
        "\u0131": "i",  # dotless i
        "ŧ": "t",
        "æ": "ae",
        "œ": "oe",
        "þ": "th",
    }
)
# Names that hold a letter folded above (either case), or rows never keyed (loaded raw before the key's
# pre_save hook): the only rows whose key can change.
_FOLDED_LETTERS = "[øØłŁđĐðÐħĦıŧŦæÆœŒþÞ]"


def _normalize(value, folds):
    decomposed = unicodedata.normalize("NFKD", value or "")
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    if folds is not None:
        stripped = stripped.translate(folds)
    folded = unicodedata.normalize("NFKD", stripped)
    return "".join(ch for ch in folded if ch.isalnum() and not unicodedata.combining(ch))


def _key(first_name, last_name, folds):
    return f"{_normalize(first_name, folds)}|{_normalize(last_name, folds)}"[:201]


def _rekey(apps, folds):
    Patient = apps.get_model("registry", "Patient")
    candidates = Patient.objects.filter(
        Q(first_name__regex=_FOLDED_LETTERS) | Q(last_name__regex=_FOLDED_LETTERS) | Q(match_key="")
    ).only("pk", "first_name", "last_name", "match_key")
    changed = []
    for patient in candidates.iterator(chunk_size=2000):
        key = _key(patient.first_name, patient.last_name, folds)
        if key != patient.match_key:
            patient.match_key = key
            changed.append(patient)
    Patient.objects.bulk_update(changed, ["match_key"], batch_size=1000)


def forward(apps, schema_editor):
    """ACT-6: the match key folds the Latin letters Unicode does not decompose (ø, ł, æ, ...); the stored
    keys of patients whose names hold one are written again (and any row never keyed), so the duplicate
    check and the NCPDP demographics match find them. No other row is touched."""
    _rekey(apps, _FOLDS)


def backward(apps, schema_editor):
    _rekey(apps, None)


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0013_digest_run_index"),
    ]

    operations = [migrations.RunPython(forward, backward)]
