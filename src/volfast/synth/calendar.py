"""CME equity-index trading calendar: holidays, sessions, the cut time, and ES expiry rules.

Holidays are computed from their rules (no hard-coded years), observed NYSE-style: a Saturday holiday is
observed on the Friday before, a Sunday holiday on the Monday after, except New Year's Day on a Saturday,
which is not observed (NYSE rule 7.2). Juneteenth is a holiday from 2022 on.

Times: the ES Globex session of trading date ``d`` runs from 17:00 America/Chicago on the previous
weekday's evening (Sunday evening for a Monday) to 16:00 America/Chicago on ``d``. The cut time is
15:48 America/New_York. All conversions go through :mod:`zoneinfo`, so DST changes are exact.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

CHICAGO = ZoneInfo("America/Chicago")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.timezone.utc

NS_PER_SECOND = 1_000_000_000
NS_PER_YEAR = 365 * 86_400 * NS_PER_SECOND  # ACT/365

#: CME month codes, January..December.
MONTH_CODES = "FGHJKMNQUVXZ"
QUARTERLY_MONTHS = (3, 6, 9, 12)


def easter_sunday(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """The ``n``-th (1-based) ``weekday`` (Mon=0) of a month; ``n = -1`` for the last one."""
    if n > 0:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: dt.date) -> dt.date:
    if day.weekday() == 5:
        return day - dt.timedelta(days=1)
    if day.weekday() == 6:
        return day + dt.timedelta(days=1)
    return day


@lru_cache(maxsize=256)
def holidays(year: int) -> frozenset[dt.date]:
    """Full-day closures of the CME equity complex / NYSE in ``year`` (observed dates)."""
    out = set()
    new_year = dt.date(year, 1, 1)
    if new_year.weekday() != 5:  # a Saturday New Year's Day is not observed on Dec 31
        out.add(_observed(new_year))
    out.add(nth_weekday(year, 1, 0, 3))  # Martin Luther King Jr. Day
    out.add(nth_weekday(year, 2, 0, 3))  # Presidents' Day
    out.add(easter_sunday(year) - dt.timedelta(days=2))  # Good Friday
    out.add(nth_weekday(year, 5, 0, -1))  # Memorial Day
    if year >= 2022:
        out.add(_observed(dt.date(year, 6, 19)))  # Juneteenth
    out.add(_observed(dt.date(year, 7, 4)))
    out.add(nth_weekday(year, 9, 0, 1))  # Labor Day
    out.add(nth_weekday(year, 11, 3, 4))  # Thanksgiving
    out.add(_observed(dt.date(year, 12, 25)))
    # A Saturday New Year's Day of year+1 would be observed on Dec 31 of this year; NYSE does not.
    return frozenset(d for d in out if d.year == year)


def is_trading_day(day: dt.date) -> bool:
    """True for weekdays that are not holidays."""
    return day.weekday() < 5 and day not in holidays(day.year)


def next_trading_day(day: dt.date) -> dt.date:
    """``day`` itself if it trades, else the next trading day."""
    while not is_trading_day(day):
        day += dt.timedelta(days=1)
    return day


def previous_trading_day(day: dt.date) -> dt.date:
    """The last trading day strictly before ``day``."""
    day -= dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def trading_days(start: dt.date, count: int) -> list[dt.date]:
    """``count`` consecutive trading days from ``start`` (which must itself trade)."""
    if not is_trading_day(start):
        raise ValueError(f"{start.isoformat()} is not a trading day")
    out = [start]
    while len(out) < count:
        out.append(next_trading_day(out[-1] + dt.timedelta(days=1)))
    return out


def trading_days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """All trading days in ``[first, last]``."""
    out = []
    day = first
    while day <= last:
        if is_trading_day(day):
            out.append(day)
        day += dt.timedelta(days=1)
    return out


def to_ns(moment: dt.datetime) -> int:
    """Nanoseconds since the UNIX epoch of an aware datetime."""
    return (
        (moment.astimezone(UTC) - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1) * 1000
    )


def session_bounds_ns(day: dt.date) -> tuple[int, int]:
    """``(start, end)`` of trading date ``day``'s Globex session in UTC ns: 17:00 CT on the previous
    calendar weekday evening (after a weekend or holiday, the evening before ``day``) to 16:00 CT."""
    opens = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(17, 0), tzinfo=CHICAGO)
    closes = dt.datetime.combine(day, dt.time(16, 0), tzinfo=CHICAGO)
    return to_ns(opens), to_ns(closes)


def cut_time_ns(day: dt.date, cut: dt.time = dt.time(15, 48)) -> int:
    """The snapshot cut of trading date ``day`` (default 15:48 America/New_York) in UTC ns."""
    return to_ns(dt.datetime.combine(day, cut, tzinfo=NEW_YORK))


# --------------------------------------------------------------------------- expiry rules


def _roll_back_to_trading_day(day: dt.date) -> dt.date:
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def quarterly_expiry_date(year: int, month: int) -> dt.date:
    """Third Friday of a quarterly month (the prior trading day if that Friday is a holiday)."""
    return _roll_back_to_trading_day(nth_weekday(year, month, 4, 3))


def future_expiration_ns(year: int, month: int) -> int:
    """ES futures last trade: 09:30 America/New_York on the third Friday (the SOQ)."""
    day = quarterly_expiry_date(year, month)
    return to_ns(dt.datetime.combine(day, dt.time(9, 30), tzinfo=NEW_YORK))


def option_expiration_ns(day: dt.date) -> int:
    """ES option expiration: 15:00 America/Chicago on its expiry date (PM settlement)."""
    return to_ns(dt.datetime.combine(day, dt.time(15, 0), tzinfo=CHICAGO))


def end_of_month_expiry(year: int, month: int) -> dt.date:
    """Last trading day of a month (the ES end-of-month option expiry)."""
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return _roll_back_to_trading_day(nxt - dt.timedelta(days=1))


def future_symbol(year: int, month: int) -> str:
    """CME futures symbol, e.g. ``ESH4`` (single-digit year, as Databento's raw_symbol)."""
    return f"ES{MONTH_CODES[month - 1]}{year % 10}"


def quarterly_futures_after(day: dt.date, count: int) -> list[tuple[int, int]]:
    """The next ``count`` quarterly (year, month) whose future has not expired by ``day``."""
    out: list[tuple[int, int]] = []
    year, month = day.year, day.month
    while len(out) < count:
        if month in QUARTERLY_MONTHS and quarterly_expiry_date(year, month) >= day:
            out.append((year, month))
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return out


def front_future(day: dt.date, roll_days: int = 8) -> tuple[int, int]:
    """The front quarterly: the nearest one until ``roll_days`` calendar days before its expiry."""
    for year, month in quarterly_futures_after(day, 3):
        if (quarterly_expiry_date(year, month) - day).days > roll_days:
            return year, month
    raise AssertionError("unreachable: a quarterly is always more than 8 days out")
