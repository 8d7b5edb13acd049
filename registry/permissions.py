"""Deny by default (STYLE.md 3). A view names, per action, the roles that may call it; anything unnamed
is refused. What a caller may see is decided by the `visible_to` selectors (404 otherwise); this module
only answers "may this role do this at all" (403 otherwise)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from registry.models import Role

# Every role set the API names, in one place.
ALL_ROLES = frozenset(Role.values)
ADMIN = frozenset({Role.ADMIN})
PRESCRIBER_ONLY = frozenset({Role.PRESCRIBER})  # ACT-6: only a prescriber enrolls (and becomes of record)
PRESCRIBING = frozenset({Role.ADMIN, Role.PRESCRIBER})  # decisions a delegate may not take (API.md)
CARE_TEAM = frozenset({Role.ADMIN, Role.PRESCRIBER, Role.DELEGATE})  # the patient's care team and admins
PRESCRIBER_OR_DELEGATE = frozenset({Role.PRESCRIBER, Role.DELEGATE})  # MON-4: status forms (API.md)
PHARMACY = frozenset({Role.PHARMACY})  # GATE-1/2: the calling pharmacy is the key's pharmacy
PHARMACY_OR_ADMIN = frozenset({Role.PHARMACY, Role.ADMIN})
FACILITY_OR_ADMIN = frozenset({Role.FACILITY, Role.ADMIN})  # GATE-3; admins record legacy history
# Pharmacies and facilities are not a patient's care team: they read reason codes, never clinical facts.
GATE_PARTIES = frozenset({Role.PHARMACY, Role.FACILITY})


class IsAuthenticatedWithRole(BasePermission):
    """Authenticated, and the user's role is listed for the action in the view's `roles` mapping
    (`{"action_name": {roles}}`, with `"*"` as the view-wide default)."""

    message = "Your role may not do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            return False
        method = (request.method or "").lower()
        if method not in getattr(view, "http_method_names", ()) or (
            not hasattr(view, "action") and not hasattr(view, method)
        ):
            return True  # no handler: let the view answer 405
        if hasattr(view, "action") and view.action is None:
            return True  # a viewset route without this method: 405
        roles: dict[str, frozenset[str]] = getattr(view, "roles", {})
        action = getattr(view, "action", None) or method
        allowed = roles.get(action, roles.get("*", frozenset()))
        return getattr(user, "role", None) in allowed


class ParticipantInStanding(BasePermission):
    """ACT-1, ACT-5: access follows certification, for every endpoint at once (a default permission
    class, after the role check).

    A deactivated participant's keys never get here (401 `key_inactive` at authentication; refused here
    too, should one slip through). A suspended or certification-expired participant, and for a prescriber
    its delegates, keep every read (GET, HEAD, OPTIONS); a write is refused with 403
    `participant_suspended` unless the view names its action in `allowed_while_suspended`.

    How a view opts a write in (patient safety does not pause: monitoring labs, status forms)::

        class PatientViewSet(RegistryViewSet):
            allowed_while_suspended = frozenset({"lab_results", "status_forms"})

    The names are the view's actions (`view.action`: "create", or an `@action` method's name such as
    "lab_results"); for a plain APIView, the lower-case HTTP method ("post"). Nothing else is needed: a
    write not listed is refused for a suspended caller.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        from django.utils import timezone

        from registry.api.authentication import InactiveKey
        from registry.errors import ParticipantSuspended
        from registry.services.standing import Standing, user_standing

        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            return True  # authentication is the role check's business
        if (request.method or "").upper() in SAFE_METHODS:
            return True
        standing = user_standing(user, now=timezone.now())  # type: ignore[arg-type]
        if standing == Standing.ACTIVE:
            return True
        if standing == Standing.DEACTIVATED:
            raise InactiveKey()
        method = (request.method or "").lower()
        if method not in getattr(view, "http_method_names", ()) or (
            not hasattr(view, "action") and not hasattr(view, method)
        ):
            return True  # no handler: let the view answer 405
        if hasattr(view, "action") and view.action is None:
            return True  # a viewset route without this method: 405
        action = getattr(view, "action", None) or method
        if action in getattr(view, "allowed_while_suspended", frozenset()):
            return True
        raise ParticipantSuspended()
