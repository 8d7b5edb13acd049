"""Certification lookup by NPI (API.md "Access, duplicates and lookups"): any participant may ask whether
an NPI is certified, e.g. a pharmacy before it ships to an infusion site, an EHR before an order. Only the
kind, the certification state and its expiry are answered (ACT-5); nothing else about the participant."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from registry.identifiers import is_valid_npi
from registry.models import PARTICIPANT_MODELS, CertificationStatus, ParticipantKind


@dataclass(frozen=True)
class CertificationState:
    npi: str
    kind: str
    certified: bool
    certification_expires_on: dt.date | None


def certification_lookup(*, npi: str, now: dt.datetime, kind: str | None = None) -> CertificationState | None:
    """The certification of the participant holding `npi` (ACT-5: certified, not suspended, deactivated or
    past its expiry, at `now`), or None when no participant ever held it.

    An NPI is unique per kind among participants that are not deactivated (a deactivated one keeps its
    record): the current enrollment answers, else the latest deactivated one (`certified: false`). Should
    participants of two kinds hold the same NPI (an organisation that is both an infusion site and a
    pharmacy), `kind` chooses; without it prescriber, facility, pharmacy is the order. One indexed query
    per kind tried."""
    if not is_valid_npi(npi):
        return None
    kinds = (
        [kind] if kind else [ParticipantKind.PRESCRIBER, ParticipantKind.FACILITY, ParticipantKind.PHARMACY]
    )
    for name in kinds:
        model = PARTICIPANT_MODELS[name]
        found = (
            model.objects.filter(npi=npi)
            .annotate(
                gone=Case(
                    When(status=CertificationStatus.DEACTIVATED, then=Value(1)),
                    default=Value(0),
                    output_field=IntegerField(),
                )
            )
            .order_by("gone", "-created_at")
            .only("npi", "status", "certification_expires_at")
            .first()
        )
        if found is not None:
            expires = found.certification_expires_at
            return CertificationState(
                npi=npi,
                kind=str(name),
                certified=found.is_certified_at(now),
                certification_expires_on=timezone.localdate(expires) if expires else None,
            )
    return None
