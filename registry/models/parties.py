"""Participants: prescribers, healthcare facilities (infusion sites) and pharmacies (ACT-1..5)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Q

from registry.identifiers import validate_dea_number, validate_ncpdp_id, validate_npi
from registry.localtime import validate_time_zone, zone_for_state

from .base import UUIDModel


class CertificationStatus(models.TextChoices):
    PENDING = "pending"
    CERTIFIED = "certified"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"


class ParticipantKind(models.TextChoices):
    PRESCRIBER = "prescriber"
    FACILITY = "facility"
    PHARMACY = "pharmacy"


class Participant(UUIDModel):
    """ACT-5: `pending -> certified -> suspended <-> certified`, and `-> deactivated` (terminal).

    A deactivated participant keeps its record; re-enrollment creates a new participant with the same NPI,
    which is why NPI uniqueness only covers participants that are not deactivated.
    """

    kind: ParticipantKind

    npi = models.CharField("NPI", max_length=10, validators=[validate_npi])
    status = models.CharField(
        max_length=16, choices=CertificationStatus.choices, default=CertificationStatus.PENDING
    )
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    certified_at = models.DateTimeField(null=True, blank=True)
    certification_expires_at = models.DateTimeField(null=True, blank=True)
    enrollment_signed_on = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ("-created_at",)

    def is_certified_at(self, at: dt.datetime) -> bool:
        """ACT-5: certified, and not past an expiry when one is set."""
        return self.status == CertificationStatus.CERTIFIED and (
            self.certification_expires_at is None or self.certification_expires_at > at
        )


def _status_check(name: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=Q(status__in=CertificationStatus.values), name=f"{name}_status_domain"
    )


def _active_npi_unique(name: str) -> models.UniqueConstraint:
    return models.UniqueConstraint(
        fields=["npi"], condition=~Q(status=CertificationStatus.DEACTIVATED), name=f"{name}_active_npi_unique"
    )


class Prescriber(Participant):
    kind = ParticipantKind.PRESCRIBER

    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    email = models.EmailField()
    credentials = models.CharField(max_length=50, blank=True)
    phone = models.CharField(max_length=32, blank=True)
    dea_number = models.CharField("DEA number", max_length=9, blank=True, validators=[validate_dea_number])
    knowledge_assessment_score = models.PositiveSmallIntegerField(null=True, blank=True)
    knowledge_assessment_passed_on = models.DateField(null=True, blank=True)
    # Local calendar days (registry/localtime.py): blank = the registry's TIME_ZONE.
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="IANA time zone of the prescriber's calendar days; blank: the registry's.",
    )
    # The care team: a guardian group holding this prescriber's patient permissions (ACT-8 transfer).
    care_team = models.OneToOneField(
        Group, on_delete=models.PROTECT, null=True, blank=True, editable=False, related_name="prescriber"
    )

    class Meta(Participant.Meta):
        constraints = [
            _status_check("prescriber"),
            _active_npi_unique("prescriber"),
            models.CheckConstraint(
                condition=Q(knowledge_assessment_score__isnull=True) | Q(knowledge_assessment_score__lte=8),
                name="prescriber_assessment_score_range",
            ),
        ]
        indexes = [models.Index(fields=["npi"]), models.Index(fields=["last_name", "first_name"])]

    def __str__(self) -> str:
        return f"{self.last_name}, {self.first_name} ({self.npi})"

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class _Site(Participant):
    name = models.CharField(max_length=200)
    address_line1 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    state = models.CharField(max_length=2, blank=True)
    postal_code = models.CharField(max_length=10, blank=True)
    authorized_rep_name = models.CharField(max_length=200, blank=True)
    authorized_rep_email = models.EmailField(blank=True)
    # Local calendar days (registry/localtime.py): "today", "future" and backdating for the site's requests
    # are judged in this zone. Derived from the state when left blank; editable.
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_time_zone],
        help_text="IANA time zone of the site (default: its state's).",
    )

    class Meta(Participant.Meta):
        abstract = True

    def __str__(self) -> str:
        return f"{self.name} ({self.npi})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.time_zone:
            self.time_zone = zone_for_state(self.state)
            update_fields = kwargs.get("update_fields")
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "time_zone"}
        super().save(*args, **kwargs)


class Facility(_Site):
    """A healthcare facility: the infusion site (ACT-3)."""

    kind = ParticipantKind.FACILITY

    infusion_reaction_readiness_attested_on = models.DateField(null=True, blank=True)

    class Meta(_Site.Meta):
        verbose_name_plural = "facilities"
        constraints = [_status_check("facility"), _active_npi_unique("facility")]
        indexes = [models.Index(fields=["npi"]), models.Index(fields=["name"])]


class Pharmacy(_Site):
    """ACT-4."""

    kind = ParticipantKind.PHARMACY

    ncpdp_id = models.CharField("NCPDP provider ID", max_length=7, validators=[validate_ncpdp_id])
    staff_training_completed_on = models.DateField(null=True, blank=True)

    class Meta(_Site.Meta):
        verbose_name_plural = "pharmacies"
        constraints = [
            _status_check("pharmacy"),
            _active_npi_unique("pharmacy"),
            models.UniqueConstraint(
                fields=["ncpdp_id"],
                condition=~Q(status=CertificationStatus.DEACTIVATED),
                name="pharmacy_active_ncpdp_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["npi"]),
            models.Index(fields=["ncpdp_id"]),
            models.Index(fields=["name"]),
        ]


PARTICIPANT_MODELS: dict[str, type[Prescriber] | type[Facility] | type[Pharmacy]] = {
    ParticipantKind.PRESCRIBER: Prescriber,
    ParticipantKind.FACILITY: Facility,
    ParticipantKind.PHARMACY: Pharmacy,
}
