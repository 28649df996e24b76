"""`bindings.cron`: an input binding that fires on a schedule (Dapr's, robfig/cron syntax).

Metadata `schedule` (required):
- `@every <duration>`, a Go duration such as `15s`, `1m30s`, `500ms` (Dapr rounds to whole
  seconds; this one does not);
- `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`), `@hourly`;
- five fields `minute hour day-of-month month day-of-week`, or six with a leading `second`.
  A field is `*` (also `?` for the days), a number, a range `a-b`, a step `*/n`, `a-b/n` or
  `a/n` (from a to the end), or a comma list of those. Months take `JAN`-`DEC`, days of the
  week `SUN`-`SAT` (0-6, and 7 for Sunday). When both day fields are restricted, a day
  matching either fires (cron's rule); otherwise both must match.

Times are the local time of the process. Every event has no data and the metadata
`timeZone` and `readTimeUTC` (RFC 3339). The handler runs in the binding's task: a tick that
comes while it still runs is skipped, never queued. A handler's exception is logged (a cron
tick cannot be retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from runtime.components.api import BindingEvent, BindingHandler, Metadata, Subscription
from runtime.components.errors import BadMetadata, ComponentError

log = logging.getLogger("mecha.bindings.cron")

DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_GO_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
             "h": 3600.0}  # fmt: skip
SEARCH_YEARS = 5
"""A schedule with no time in this many years never fires, and is refused."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_from: int = 0


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    _Field("day of week", 0, 7, _WEEKDAYS, 0),
)


# -- schedules -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Every:
    interval: float
    """Seconds between two ticks."""


@dataclass(frozen=True, slots=True)
class Cron:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0 is Sunday."""
    any_day: bool
    """Day of month was `*` or `?`."""
    any_weekday: bool

    def next_after(self, moment: datetime) -> datetime:
        """The first matching time (whole seconds, naive local) strictly after `moment`."""
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = candidate.year + SEARCH_YEARS
        while candidate.year <= limit:
            if candidate.month not in self.months:
                candidate = _next_month(candidate)
            elif not self._day_matches(candidate):
                candidate = _start_of_day(candidate + timedelta(days=1))
            elif candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0, second=0) + timedelta(hours=1)
            elif candidate.minute not in self.minutes:
                candidate = candidate.replace(second=0) + timedelta(minutes=1)
            elif candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise ValueError(f"matches no time in the next {SEARCH_YEARS} years")

    def _day_matches(self, moment: datetime) -> bool:
        day = moment.day in self.days
        weekday = (moment.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return day and weekday
        return day or weekday


def _next_month(moment: datetime) -> datetime:
    first = _start_of_day(moment.replace(day=1))
    return (first + timedelta(days=32)).replace(day=1)


def _start_of_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def parse_schedule(text: str) -> Every | Cron:
    """A schedule from Dapr's syntax; ValueError says what is wrong."""
    text = text.strip()
    if text.startswith("@every "):
        return Every(parse_go_duration(text.removeprefix("@every ").strip()))
    if text.startswith("@"):
        if text not in DESCRIPTORS:
            raise ValueError(f"unknown descriptor {text!r}")
        text = DESCRIPTORS[text]
    fields = text.split()
    if len(fields) == 5:
        fields.insert(0, "0")
    if len(fields) != 6:
        raise ValueError(f"expected 5 or 6 fields, got {len(fields)} in {text!r}")
    return _cron(fields)


def _cron(fields: list[str]) -> Cron:
    second, minute, hour, day, month, weekday = (
        _parse_field(text, spec) for text, spec in zip(fields, _FIELDS, strict=True)
    )
    weekdays = frozenset(number % 7 for number in weekday)
    return Cron(second, minute, hour, day, month, weekdays, _is_any(fields[3]), _is_any(fields[5]))


def _is_any(text: str) -> bool:
    return text in ("*", "?")


def _parse_field(text: str, spec: _Field) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        values.update(_parse_part(part, spec))
    return frozenset(values)


def _parse_part(part: str, spec: _Field) -> range:
    span, slash, step_text = part.partition("/")
    step = _number(step_text, spec, "step") if slash else 1
    if step < 1:
        raise ValueError(f"{spec.name}: step must be at least 1 in {part!r}")
    if span in ("*", "?"):
        if span == "?" and spec.name not in ("day of month", "day of week"):
            raise ValueError(f"{spec.name}: '?' is only for the day fields")
        return range(spec.low, spec.high + 1, step)
    low_text, dash, high_text = span.partition("-")
    low = _value(low_text, spec)
    high = _value(high_text, spec) if dash else (spec.high if slash else low)
    if high < low:
        raise ValueError(f"{spec.name}: range {span!r} ends before it starts")
    return range(low, high + 1, step)


def _value(text: str, spec: _Field) -> int:
    upper = text.upper()
    if upper in spec.names:
        return spec.names.index(upper) + spec.names_from
    number = _number(text, spec, "value")
    if not spec.low <= number <= spec.high:
        raise ValueError(f"{spec.name}: {number} is outside {spec.low}-{spec.high}")
    return number


def _number(text: str, spec: _Field, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"{spec.name}: {what} {text!r} is not a number")
    return int(text)


def parse_go_duration(text: str) -> float:
    """Seconds from a Go duration: `15s`, `1m30s`, `1.5h`, `250ms`; must be positive."""
    position, seconds = 0, 0.0
    while position < len(text):
        match = _GO_DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (expected e.g. 15s, 1m30s, 500ms)")
        seconds += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if not seconds > 0:
        raise ValueError(f"invalid duration {text!r}: must be positive")
    return seconds


# -- the binding -----------------------------------------------------------------------------------


class _Ticker:
    """One `read()`: a task that waits for each tick and calls the handler."""

    def __init__(self, owner: CronInputBinding, schedule: Every | Cron, handler: BindingHandler):
        self._owner = owner
        self._schedule = schedule
        self._handler = handler
        self._task = asyncio.create_task(self._run(), name=f"bindings.cron {owner.schedule_text}")

    async def cancel(self) -> None:
        self._owner.forget(self)
        await self.stop()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        if isinstance(self._schedule, Every):
            await self._run_every(self._schedule.interval)
        else:
            await self._run_cron(self._schedule)

    async def _run_every(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            await self._fire()
            due += interval
            if due <= loop.time():  # the handler overran: skip the missed ticks
                due = loop.time() + interval

    async def _run_cron(self, schedule: Cron) -> None:
        last = datetime.now()
        while True:
            due = schedule.next_after(max(last, datetime.now()))
            await asyncio.sleep(max(0.0, due.timestamp() - time.time()))
            last = due
            await self._fire()

    async def _fire(self) -> None:
        now = datetime.now(UTC)
        metadata = {
            "timeZone": datetime.now().astimezone().tzname() or "Local",
            "readTimeUTC": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        try:
            await self._handler(BindingEvent(data=b"", metadata=metadata))
        except Exception:
            log.exception("cron binding (%s): handler failed", self._owner.schedule_text)


class CronInputBinding:
    def __init__(self) -> None:
        self.schedule_text = ""
        self._schedule: Every | Cron | None = None
        self._tickers: set[_Ticker] = set()

    async def init(self, metadata: Metadata) -> None:
        text = metadata.get("schedule", "").strip()
        if not text:
            raise BadMetadata("schedule", "required, e.g. '@every 15s' or '0 30 * * * *'")
        try:
            schedule = parse_schedule(text)
            if isinstance(schedule, Cron):
                schedule.next_after(datetime.now())
        except ValueError as error:
            raise BadMetadata("schedule", str(error)) from None
        self.schedule_text, self._schedule = text, schedule

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        tickers, self._tickers = self._tickers, set()
        await asyncio.gather(*(ticker.stop() for ticker in tickers))

    async def read(self, handler: BindingHandler) -> Subscription:
        if self._schedule is None:
            raise ComponentError("cron binding is not initialised", retryable=False)
        ticker = _Ticker(self, self._schedule, handler)
        self._tickers.add(ticker)
        return ticker

    def forget(self, ticker: _Ticker) -> None:
        self._tickers.discard(ticker)
