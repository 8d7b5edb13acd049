"""factory_boy factories. Records whose creation is a rule (participant users, patients with care-team
access) are built through the services, so tests exercise the same path as the API."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import factory
from django.utils import timezone

from registry.models import CertificationStatus, Facility, Pharmacy, Prescriber


def make_npi(rng: random.Random | None = None) -> str:
    """A random valid NPI (ID-1): Luhn over 80840 + the first 9 digits."""
    rng = rng or random.Random()
    body = str(rng.choice("12")) + "".join(str(rng.randrange(10)) for _ in range(8))
    digits = "80840" + body
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # positions that get doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


_npi_rng = random.Random(20261120)
_ncpdp_seq = iter(range(1000000, 9999999))


class PrescriberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prescriber

    npi = factory.LazyFunction(lambda: make_npi(_npi_rng))
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.Faker("email")
    credentials = "MD"
    knowledge_assessment_score = 8
    knowledge_assessment_passed_on = factory.LazyFunction(
        lambda: timezone.localdate() - dt.timedelta(days=30)
    )
    enrollment_signed_on = factory.LazyFunction(lambda: timezone.localdate() - dt.timedelta(days=30))

    class Params:
        certified = factory.Trait(
            status=CertificationStatus.CERTIFIED,
            certified_at=factory.LazyFunction(timezone.now),
            status_changed_at=factory.LazyFunction(timezone.now),
        )


class _SiteFactory(factory.django.DjangoModelFactory):
    npi = factory.LazyFunction(lambda: make_npi(_npi_rng))
    address_line1 = factory.Faker("street_address")
    city = factory.Faker("city")
    state = "MA"
    postal_code = "02139"
    authorized_rep_name = factory.Faker("name")
    authorized_rep_email = factory.Faker("email")
    enrollment_signed_on = factory.LazyFunction(lambda: timezone.localdate() - dt.timedelta(days=30))

    class Params:
        certified = factory.Trait(
            status=CertificationStatus.CERTIFIED,
            certified_at=factory.LazyFunction(timezone.now),
            status_changed_at=factory.LazyFunction(timezone.now),
        )


class FacilityFactory(_SiteFactory):
    class Meta:
        model = Facility

    name = factory.Sequence(lambda n: f"Infusion Center {n}")
    infusion_reaction_readiness_attested_on = factory.LazyFunction(
        lambda: timezone.localdate() - dt.timedelta(days=30)
    )


class PharmacyFactory(_SiteFactory):
    class Meta:
        model = Pharmacy

    name = factory.Sequence(lambda n: f"Specialty Pharmacy {n}")
    ncpdp_id = factory.LazyFunction(lambda: str(next(_ncpdp_seq)))
    staff_training_completed_on = factory.LazyFunction(lambda: timezone.localdate() - dt.timedelta(days=30))


_body_ncpdp = iter(range(3000000, 3999999))


def create_body(kind: str, **overrides: Any) -> dict[str, Any]:
    """A registration body that meets every certification requirement of its kind (ACT-2..4)."""
    if kind == "prescribers":
        body = {
            "npi": make_npi(),
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.org",
            "credentials": "MD",
            "knowledge_assessment_score": 8,
            "knowledge_assessment_passed_on": "2026-10-01",
            "enrollment_signed_on": "2026-10-02",
        }
    else:
        body = {
            "npi": make_npi(),
            "name": "Riverside Infusion Center",
            "address_line1": "1 Main St",
            "city": "Boston",
            "state": "MA",
            "postal_code": "02139",
            "authorized_rep_name": "Rita Rep",
            "authorized_rep_email": "rita@example.org",
            "enrollment_signed_on": "2026-10-02",
        }
        if kind == "facilities":
            body["infusion_reaction_readiness_attested_on"] = "2026-10-03"
        else:
            body["ncpdp_id"] = str(next(_body_ncpdp))
            body["staff_training_completed_on"] = "2026-10-03"
    return {**body, **overrides}
