"""When the digest is due: chosen weekdays at a wall-clock time in an IANA time zone.

A slot is a wall-clock time on a chosen day in the configured zone, converted to UTC. Daylight-saving
changes are handled the way people expect of a meeting reminder:
- a time that does not exist that day (clocks jump forward over it) is sent at the same offset from
  midnight after the jump, e.g. 02:30 in Europe/Berlin on the last Sunday of March is sent at 03:30 CEST;
- a time that happens twice (clocks go back) is sent once, at its first occurrence.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

__all__ = ["latest_slot", "next_slot", "slot_id", "slot_on"]


def slot_on(day: date, at: clock_time, zone: ZoneInfo) -> datetime:
    """The UTC instant of `at` on `day` in `zone` (fold=0: the first occurrence; a gap moves forward)."""
    local = datetime(day.year, day.month, day.day, at.hour, at.minute, tzinfo=zone, fold=0)
    return local.astimezone(UTC)


def _candidates(around: datetime, days: tuple[int, ...], at: clock_time, zone: ZoneInfo,
                span: range) -> list[datetime]:
    today = around.astimezone(zone).date()
    wanted = set(days)
    out = []
    for offset in span:
        day = today + timedelta(days=offset)
        if day.weekday() in wanted:
            out.append(slot_on(day, at, zone))
    return sorted(out)


def next_slot(after: datetime, days: tuple[int, ...], at: clock_time, zone: ZoneInfo) -> datetime:
    """The first slot strictly after `after` (an aware datetime), in UTC."""
    if not days:
        raise ValueError("no day chosen")
    after_utc = after.astimezone(UTC)
    return next(s for s in _candidates(after_utc, days, at, zone, range(-1, 9)) if s > after_utc)


def latest_slot(now: datetime, days: tuple[int, ...], at: clock_time, zone: ZoneInfo) -> datetime:
    """The last slot at or before `now` (an aware datetime), in UTC."""
    if not days:
        raise ValueError("no day chosen")
    now_utc = now.astimezone(UTC)
    return [s for s in _candidates(now_utc, days, at, zone, range(-8, 2)) if s <= now_utc][-1]


def slot_id(slot: datetime) -> str:
    """A stable name for a slot, as recorded in the state file: its UTC time in ISO 8601."""
    return slot.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
