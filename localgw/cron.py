"""cron-connector's schedules: 5-field cron and `@every`-style descriptors (robfig/cron)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from openfaas_iam.durations import parse_duration

_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")


def _field(text: str, lo: int, hi: int, name: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{name}: bad step {step_text!r}")
            step = int(step_text)
        if part in ("*", "?"):
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(f"{name}: bad range {part!r}")
            start, end = int(a), int(b)
        elif part.isdigit():
            start = int(part)
            end = hi if step > 1 else start
        else:
            raise ValueError(f"{name}: bad value {part!r}")
        if name == "day of week" and end == 7:
            end = 6 if start <= 6 else 0
            values.add(0)
        if not (lo <= start <= hi and lo <= end <= hi and start <= end):
            raise ValueError(f"{name}: {part!r} outside {lo}-{hi}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    text: str
    every: float | None = None
    fields: tuple[frozenset[int], ...] = ()
    dom_restricted: bool = False
    dow_restricted: bool = False

    @classmethod
    def parse(cls, text: str) -> Schedule:
        s = text.strip()
        if s.startswith("@every "):
            seconds = parse_duration(s[len("@every ") :].strip())
            if seconds <= 0:
                raise ValueError(f"schedule {text!r}: @every needs a positive duration")
            return cls(text, every=seconds)
        expr = _DESCRIPTORS.get(s, s)
        parts = expr.split()
        if len(parts) != 5:
            raise ValueError(
                f"schedule {text!r}: expected 5 fields (minute hour day month weekday) or @every <duration>"
            )
        fields = tuple(_field(p, lo, hi, n) for p, (lo, hi), n in zip(parts, _RANGES, _NAMES))
        return cls(text, None, fields, parts[2] not in ("*", "?"), parts[4] not in ("*", "?"))

    def _day_ok(self, t: datetime) -> bool:
        dom = t.day in self.fields[2]
        dow = (t.isoweekday() % 7) in self.fields[4]
        if self.dom_restricted and self.dow_restricted:
            return dom or dow  # classic cron: either day field may match
        return dom and dow

    def next_after(self, t: datetime) -> datetime:
        """The first firing time strictly after t."""
        if self.every is not None:
            return t + timedelta(seconds=self.every)
        minute, hour, _, month, _ = self.fields
        n = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while n <= limit:
            if n.month not in month:
                n = (n.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_ok(n):
                n = n.replace(hour=0, minute=0) + timedelta(days=1)
            elif n.hour not in hour:
                n = n.replace(minute=0) + timedelta(hours=1)
            elif n.minute not in minute:
                n += timedelta(minutes=1)
            else:
                return n
        raise ValueError(f"schedule {self.text!r} never fires")
