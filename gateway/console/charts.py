"""SVG charts drawn on the server from the console's outcome history (issue 23): no script, no
external asset, every label escaped. Colour is never the only signal: each chart carries a text
summary (`aria-label` and `<title>`) and the pages print the same figures as text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from gateway.console.history import Minute
from gateway.ops.metrics import OUTCOMES
from gateway.policy.outcomes import DELIVERY_CODES


@dataclass(frozen=True)
class Summary:
    """An hour of outcomes as figures."""

    attempts: int
    acked: int
    failures: int

    @property
    def success_rate(self) -> float | None:
        """Acked attempts over all attempts, or None when there were none."""
        return None if self.attempts == 0 else self.acked / self.attempts

    @property
    def per_minute(self) -> float:
        return self.attempts / 60.0


def summarize(minutes: Sequence[Minute]) -> Summary:
    return Summary(
        attempts=sum(minute.attempts for minute in minutes),
        acked=sum(minute.counts["acked"] for minute in minutes),
        failures=sum(minute.failures for minute in minutes),
    )


def describe(summary: Summary) -> str:
    if summary.attempts == 0:
        return "no push attempts in the last hour"
    rate = summary.success_rate or 0.0
    return (
        f"last hour: {summary.attempts} push attempts, {summary.acked} acked, "
        f"{summary.failures} failed ({rate:.0%} succeeded)"
    )


def sparkline(minutes: Sequence[Minute], width: int = 120, height: int = 28) -> Markup:
    """A small bar per minute: acked at the bottom, failures stacked above."""
    peak = max((minute.attempts for minute in minutes), default=0) or 1
    step = width / max(1, len(minutes))
    bars: list[str] = []
    for index, minute in enumerate(minutes):
        x = index * step
        bars += _stack(
            x, step, height, peak, [("ok", minute.counts["acked"]), ("bad", minute.failures)]
        )
    return _svg(width, height, "spark", describe(summarize(minutes)), bars)


def outcome_chart(minutes: Sequence[Minute]) -> Markup:
    """Bars per minute stacked by outcome (acked, retried, ...), with a scale and a legend."""
    return _stacked_chart(minutes, OUTCOMES, lambda minute: minute.counts, "")


def code_chart(minutes: Sequence[Minute]) -> Markup:
    """Bars per minute stacked by the attempts' `code` (2xx, 5xx, timeout, ...)."""
    label = describe_codes(minutes)
    return _stacked_chart(minutes, DELIVERY_CODES, lambda minute: minute.codes, "code-", label)


def describe_codes(minutes: Sequence[Minute]) -> str:
    totals = {code: sum(minute.codes[code] for minute in minutes) for code in DELIVERY_CODES}
    seen = [f"{count} {code}" for code, count in totals.items() if count]
    return "last hour by code: " + (", ".join(seen) if seen else "no push attempts")


def _stacked_chart(
    minutes: Sequence[Minute],
    series: Sequence[str],
    counts_of: Callable[[Minute], dict[str, int]],
    css_prefix: str,
    label: str | None = None,
    width: int = 600,
    height: int = 160,
) -> Markup:
    plot = height - 30
    peak = max((minute.attempts for minute in minutes), default=0) or 1
    step = (width - 40) / max(1, len(minutes))
    parts: list[str] = [
        f'<text x="0" y="10" class="axis">{peak}/min</text>',
        f'<text x="0" y="{plot}" class="axis">0</text>',
        f'<text x="40" y="{height - 16}" class="axis">60 min ago</text>',
        f'<text x="{width - 30}" y="{height - 16}" class="axis" text-anchor="end">now</text>',
    ]
    for index, minute in enumerate(minutes):
        counts = counts_of(minute)
        layers = [(css_prefix + name, counts[name]) for name in series]
        parts += _stack(40 + index * step, step, plot, peak, layers)
    x = 40.0
    spacing = (width - 40) / len(series)
    for name in series:
        parts.append(
            f'<rect x="{x:.0f}" y="{height - 10}" width="8" height="8" class="{css_prefix}{name}"/>'
        )
        parts.append(f'<text x="{x + 11:.0f}" y="{height - 2}" class="axis">{name}</text>')
        x += spacing
    return _svg(width, height, "chart", label or describe(summarize(minutes)), parts)


def _stack(
    x: float, step: float, height: float, peak: int, layers: Sequence[tuple[str, int]]
) -> list[str]:
    """One minute's bar: each (class, count) layer stacked from the bottom up."""
    rects: list[str] = []
    bottom = float(height)
    for css, count in layers:
        if count <= 0:
            continue
        tall = max(1.0, height * count / peak)
        bottom -= tall
        rects.append(
            f'<rect x="{x:.1f}" y="{bottom:.1f}" width="{max(1.0, step - 0.5):.1f}" '
            f'height="{tall:.1f}" class="{css}"/>'
        )
    return rects


def _svg(width: int, height: int, css: str, label: str, parts: list[str]) -> Markup:
    text = escape(label)
    return Markup(
        f'<svg class="{css}" role="img" aria-label="{text}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{text}</title>{''.join(parts)}</svg>"
    )
