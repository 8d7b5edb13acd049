"""GET /api/v1/certifications/{npi} (API.md "Access, duplicates and lookups"; ACT-5): any authenticated key
learns an NPI's kind, whether it is certified now, and the certification's expiry; nothing else."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from registry.models import CertificationStatus

from .factories import FacilityFactory, PharmacyFactory, PrescriberFactory, make_npi

pytestmark = pytest.mark.django_db


def lookup(persona, npi, **params):
    return persona.client.get(f"/api/v1/certifications/{npi}", params)


def test_certified_prescriber_answers_only_the_four_fields_act_5(pharmacy, prescriber):
    response = lookup(pharmacy, prescriber.participant.npi)

    assert response.status_code == 200
    assert response.json() == {
        "npi": prescriber.participant.npi,
        "kind": "prescriber",
        "certified": True,
        "certification_expires_on": None,
    }


def test_expiry_is_answered_and_counts_act_5(pharmacy):
    now = timezone.now()
    live = FacilityFactory(certified=True, certification_expires_at=now + dt.timedelta(days=30))
    lapsed = FacilityFactory(certified=True, certification_expires_at=now - dt.timedelta(minutes=1))

    assert lookup(pharmacy, live.npi).json() == {
        "npi": live.npi,
        "kind": "facility",
        "certified": True,
        "certification_expires_on": timezone.localdate(now + dt.timedelta(days=30)).isoformat(),
    }
    assert lookup(pharmacy, lapsed.npi).json()["certified"] is False


@pytest.mark.parametrize("status", [CertificationStatus.PENDING, CertificationStatus.SUSPENDED])
def test_pending_and_suspended_are_not_certified_act_5(facility, status):
    pharmacy = PharmacyFactory(status=status)
    assert lookup(facility, pharmacy.npi).json() == {
        "npi": pharmacy.npi,
        "kind": "pharmacy",
        "certified": False,
        "certification_expires_on": None,
    }


def test_deactivated_is_not_certified_and_a_re_enrollment_answers_act_5(pharmacy):
    old = FacilityFactory(certified=True)
    old.status = CertificationStatus.DEACTIVATED
    old.save(update_fields=["status"])
    assert lookup(pharmacy, old.npi).json()["certified"] is False

    FacilityFactory(certified=True, npi=old.npi)
    assert lookup(pharmacy, old.npi).json()["certified"] is True


def test_unknown_or_malformed_npi_is_404(pharmacy):
    for npi in (make_npi(), "12345", "1558598798", "x" * 40):
        response = lookup(pharmacy, npi)
        assert response.status_code == 404, npi
        assert response.json() == {"code": "not_found", "detail": "No participant has this NPI."}


def test_kind_chooses_between_participants_sharing_an_npi(prescriber):
    """An organisation may be both an infusion site and a pharmacy under one NPI."""
    site = FacilityFactory(certified=True)
    PharmacyFactory(npi=site.npi)  # pending

    assert lookup(prescriber, site.npi).json()["kind"] == "facility"
    assert lookup(prescriber, site.npi, kind="pharmacy").json() == {
        "npi": site.npi,
        "kind": "pharmacy",
        "certified": False,
        "certification_expires_on": None,
    }
    assert lookup(prescriber, site.npi, kind="prescriber").status_code == 404
    bad = lookup(prescriber, site.npi, kind="patient")
    assert bad.status_code == 400
    assert bad.json()["code"] == "validation_error"
    assert list(bad.json()["errors"]) == ["kind"]


@pytest.mark.parametrize(
    ("persona_name", "status"),
    [
        ("pharmacy", 200),
        ("facility", 200),
        ("prescriber", 200),
        ("delegate", 200),
        ("admin", 200),
        ("anon", 401),
    ],
)
def test_permission_matrix(request, persona_name, status):
    target = PrescriberFactory(certified=True)
    response = lookup(request.getfixturevalue(persona_name), target.npi)

    assert response.status_code == status
    if status == 200:
        assert response.json()["certified"] is True
    else:
        assert response.json()["code"] == "not_authenticated"


def test_trailing_slash_works(pharmacy, prescriber):
    assert pharmacy.get(f"/api/v1/certifications/{prescriber.participant.npi}/").status_code == 200
