"""Server-rendered SVG charts for the dashboard: no script, no library, CSP-safe.

Colours come from classes styled in static/admin.css (presentation attributes only, no
inline style), so the charts follow the console's light and dark themes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from markupsafe import Markup
from markupsafe import escape

from newsletter.figures import SendFigures
from newsletter.models import DeliveryStatus

# The stacked parts of a send's bar, bottom to top: (css class, label, statuses).
SEND_PARTS = (
    ("delivered", "delivered", (DeliveryStatus.DELIVERED,)),
    ("sent", "sent, not yet reported", (DeliveryStatus.SENT,)),
    ("queued", "queued or sending", (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)),
    ("bounced", "bounced or complained", (DeliveryStatus.BOUNCED, DeliveryStatus.COMPLAINED)),
    ("failed", "failed or unknown", (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN)),
    ("suppressed", "suppressed", (DeliveryStatus.SUPPRESSED,)),
)


def _nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^n (n ≥ 1) at or above value: a round top for the axis.

    At least 10, so that the middle grid line is a whole number too.
    """
    if value <= 10:
        return 10
    magnitude = 1
    while magnitude * 10 <= value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _fmt(number: int) -> str:
    return f"{number:,}"


def growth_chart(
    series: Sequence[tuple[date, int]], *, title: str, width: int = 640, height: int = 160
) -> Markup:
    """A line chart of active readers per day, with the first and last day labelled."""
    left, right, top, bottom = 48, 8, 10, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_ceiling(max((value for _, value in series), default=0))
    n = len(series)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(value: int) -> float:
        return top + plot_h - plot_h * value / peak

    parts = [
        f'<svg class="chart growth" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        value = round(peak * fraction)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" '
            f'y1="{y(value):.1f}" y2="{y(value):.1f}"/>'
            f'<text class="tick" x="{left - 6}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end">{_fmt(value)}</text>'
        )
    if series:
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v) in enumerate(series))
        area = f"{x(0):.1f},{y(0):.1f} {points} {x(n - 1):.1f},{y(0):.1f}"
        parts.append(f'<polygon class="area" points="{area}"/>')
        parts.append(f'<polyline class="line" points="{points}"/>')
        first_day, _ = series[0]
        last_day, last_value = series[-1]
        parts.append(
            f'<circle class="dot" cx="{x(n - 1):.1f}" cy="{y(last_value):.1f}" r="3">'
            f"<title>{last_day.isoformat()}: {_fmt(last_value)} active</title></circle>"
        )
        baseline = height - 6
        parts.append(
            f'<text class="tick" x="{left}" y="{baseline}">{first_day.isoformat()}</text>'
            f'<text class="tick" x="{width - right}" y="{baseline}" text-anchor="end">'
            f"{last_day.isoformat()}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def sends_chart(
    sends: Sequence[SendFigures], *, title: str, width: int = 640, height: int = 180
) -> Markup:
    """Stacked bars of the latest issues' ledgers: delivered, sent, bounced, failed..."""
    left, right, top, bottom = 48, 8, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_ceiling(max((send.total for send in sends), default=0))
    slot = plot_w / max(len(sends), 1)
    bar = min(48.0, slot * 0.7)
    parts = [
        f'<svg class="chart sends" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        value = round(peak * fraction)
        level = top + plot_h - plot_h * value / peak
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" '
            f'y1="{level:.1f}" y2="{level:.1f}"/>'
            f'<text class="tick" x="{left - 6}" y="{level + 4:.1f}" '
            f'text-anchor="end">{_fmt(value)}</text>'
        )
    for index, send in enumerate(sends):
        x = left + slot * index + (slot - bar) / 2
        floor = float(top + plot_h)
        for css, label, statuses in SEND_PARTS:
            number = send.count(*statuses)
            if not number:
                continue
            tall = plot_h * number / peak
            floor -= tall
            parts.append(
                f'<rect class="part {css}" x="{x:.1f}" y="{floor:.1f}" width="{bar:.1f}" '
                f'height="{tall:.1f}"><title>{escape(send.issue.slug)}: {_fmt(number)} '
                f"{escape(label)}</title></rect>"
            )
        name = send.issue.slug if len(send.issue.slug) <= 12 else send.issue.slug[:11] + "…"
        parts.append(
            f'<text class="tick" x="{x + bar / 2:.1f}" y="{height - 8}" '
            f'text-anchor="middle">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def legend() -> list[tuple[str, str]]:
    """The (css class, label) of each part of the sends chart, for the template's legend."""
    return [(css, label) for css, label, _ in SEND_PARTS]
