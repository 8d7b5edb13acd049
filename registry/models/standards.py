"""Messages received through the standards endpoints (NCPDP SCRIPT REMS transactions)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from .base import UUIDModel


class NcpdpTransaction(models.TextChoices):
    REMS_INITIATION_REQUEST = "REMSInitiationRequest"
    REMS_REQUEST = "REMSRequest"


class NcpdpMessage(UUIDModel):
    """One NCPDP SCRIPT REMS message from one sender and the answer it got.

    A sender's `MessageID` identifies the message: the unique (sender, message_id) constraint makes a
    retransmission replay the first answer instead of running the gate again, and lets two copies sent at
    once queue on the index (the second replays the first's committed answer). The sender is the
    authenticated caller, never the message's own `From` header, which is kept for the record only.
    A REMSRequest links the gate decision it produced (GATE-5), so the message IDs stay with the decision.
    """

    sender = models.ForeignKey("registry.User", on_delete=models.PROTECT, related_name="+")
    message_id = models.CharField("MessageID", max_length=64)
    transaction = models.CharField(max_length=24, choices=NcpdpTransaction.choices)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the message body, header excluded.")
    header_from = models.CharField(max_length=100, blank=True)
    sent_time = models.CharField(max_length=40, blank=True)
    decision = models.OneToOneField(
        "registry.Decision",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="ncpdp_message",
    )
    patient = models.ForeignKey(
        "registry.Patient", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    response_message_id = models.CharField(max_length=64, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_xml = models.TextField(blank=True)

    class Meta:
        verbose_name = "NCPDP message"
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(fields=["sender", "message_id"], name="ncpdp_message_id_per_sender"),
            models.CheckConstraint(
                condition=Q(transaction__in=NcpdpTransaction.values), name="ncpdp_transaction_domain"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.transaction} {self.message_id}"
