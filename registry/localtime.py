"""Local calendar days (issue 9, item 7).

Dates in the REMS are calendar days of the party that lives them: a facility's infusion day, a pharmacy's
dispense day, a prescriber's enrollment or lab day. "Today", "in the future" and backdating limits for a
request are therefore judged in the requesting party's own zone: facilities and pharmacies carry an IANA
`time_zone` (by default derived from their US state; editable), prescribers may set one, and
administrators (and prescribers who set none) use the registry's `TIME_ZONE`.

`local_today(party, now)` is the one place a service turns a moment into "today" for a request.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

# The zone of most of each state's population (states spanning two zones take the larger one; a site in
# the other part sets its `time_zone`).
STATE_TIME_ZONES: dict[str, str] = {
    "AL": "America/Chicago",
    "AK": "America/Anchorage",
    "AZ": "America/Phoenix",
    "AR": "America/Chicago",
    "CA": "America/Los_Angeles",
    "CO": "America/Denver",
    "CT": "America/New_York",
    "DE": "America/New_York",
    "DC": "America/New_York",
    "FL": "America/New_York",
    "GA": "America/New_York",
    "HI": "Pacific/Honolulu",
    "ID": "America/Boise",
    "IL": "America/Chicago",
    "IN": "America/Indiana/Indianapolis",
    "IA": "America/Chicago",
    "KS": "America/Chicago",
    "KY": "America/New_York",
    "LA": "America/Chicago",
    "ME": "America/New_York",
    "MD": "America/New_York",
    "MA": "America/New_York",
    "MI": "America/Detroit",
    "MN": "America/Chicago",
    "MS": "America/Chicago",
    "MO": "America/Chicago",
    "MT": "America/Denver",
    "NE": "America/Chicago",
    "NV": "America/Los_Angeles",
    "NH": "America/New_York",
    "NJ": "America/New_York",
    "NM": "America/Denver",
    "NY": "America/New_York",
    "NC": "America/New_York",
    "ND": "America/Chicago",
    "OH": "America/New_York",
    "OK": "America/Chicago",
    "OR": "America/Los_Angeles",
    "PA": "America/New_York",
    "RI": "America/New_York",
    "SC": "America/New_York",
    "SD": "America/Chicago",
    "TN": "America/Chicago",
    "TX": "America/Chicago",
    "UT": "America/Denver",
    "VT": "America/New_York",
    "VA": "America/New_York",
    "WA": "America/Los_Angeles",
    "WV": "America/New_York",
    "WI": "America/Chicago",
    "WY": "America/Denver",
    # Territories
    "AS": "Pacific/Pago_Pago",
    "GU": "Pacific/Guam",
    "MP": "Pacific/Saipan",
    "PR": "America/Puerto_Rico",
    "VI": "America/St_Thomas",
}


def registry_time_zone() -> str:
    return str(settings.TIME_ZONE)


def zone_for_state(state: str | None) -> str:
    """The default zone of a site in this US state or territory; the registry's zone when unknown."""
    return STATE_TIME_ZONES.get((state or "").strip().upper(), registry_time_zone())


@lru_cache(maxsize=512)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def is_valid_time_zone(name: str) -> bool:
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        _zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def validate_time_zone(value: str) -> None:
    """Model and serializer validator: an IANA zone name zoneinfo knows (e.g. `America/Chicago`)."""
    if value and not is_valid_time_zone(value):
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. America/Chicago).", code="invalid")


def party_time_zone(party: Any) -> str:
    """The zone a party's calendar days are in: a facility's or pharmacy's own zone (else its state's), a
    prescriber's if set; for a user, that of the participant it acts for (a delegate: its prescriber's);
    administrators and everyone else: the registry's zone."""
    if party is None:
        return registry_time_zone()
    role = getattr(party, "role", None)
    if role is not None:  # a User
        participant = None
        if role == "facility":
            participant = party.facility
        elif role == "pharmacy":
            participant = party.pharmacy
        elif role in ("prescriber", "delegate"):
            participant = party.prescriber
        return party_time_zone(participant) if participant is not None else registry_time_zone()
    zone = str(getattr(party, "time_zone", None) or "")
    if zone and is_valid_time_zone(zone):
        return zone
    state = str(getattr(party, "state", None) or "")
    if state:
        return zone_for_state(state)
    return registry_time_zone()


def local_date(moment: dt.datetime, zone: str) -> dt.date:
    return moment.astimezone(_zone(zone)).date()


def local_today(party: Any, now: dt.datetime) -> dt.date:
    """ "Today" for a request by `party` (a User, or a participant) at the moment `now`, in its own zone."""
    return local_date(now, party_time_zone(party))


__all__ = [
    "STATE_TIME_ZONES",
    "is_valid_time_zone",
    "local_date",
    "local_today",
    "party_time_zone",
    "validate_time_zone",
    "zone_for_state",
]
