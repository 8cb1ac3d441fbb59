"""The progress chart: cumulative counts over time as a small SVG, made on the server.

Inline SVG needs no script and no image request, and the page's CSP allows it (colours come
from classes in dashboard.css, never from style attributes, which the CSP forbids). Each
line is a step function of one kind of moment: allocations made, submissions, and the
submissions that are now confirmed (or invited lab work), flagged or failed the attention
policy, each drawn at its submission time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from markupsafe import Markup

from analysis.dashboard.progress import COUNTED, Moment

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 10, 24


@dataclass(frozen=True)
class Series:
    name: str  # the CSS class (series-<name>) and the legend's key
    title: str
    times: tuple[datetime, ...]  # sorted

    @property
    def total(self) -> int:
        return len(self.times)


def series(moments: Sequence[Moment]) -> list[Series]:
    """The chart's lines; a state no submission is in (e.g. flagged) gets no line."""
    submitted = [m for m in moments if m.submitted_at is not None]

    def at(chosen: Sequence[Moment], when: str) -> tuple[datetime, ...]:
        return tuple(sorted(getattr(m, when) for m in chosen))

    lines = [
        Series("allocated", "allocated", at(moments, "allocated_at")),
        Series("submitted", "submitted", at(submitted, "submitted_at")),
        Series(
            "confirmed",
            "confirmed (or invited lab)",
            at([m for m in submitted if m.verification in COUNTED], "submitted_at"),
        ),
    ]
    for state, title in (("flagged", "flagged"), ("failed_attention", "failed attention")):
        chosen = [m for m in submitted if m.verification == state]
        if chosen:
            lines.append(Series(state, title, at(chosen, "submitted_at")))
    return lines


def _time_label(moment: datetime, span: timedelta) -> str:
    if span < timedelta(hours=1):
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%H:%M" if span < timedelta(days=2) else "%m-%d %H:%M")


def progress_chart(moments: Sequence[Moment], *, goal: int, now: datetime | None = None) -> Markup:
    """The SVG (safe to embed), or a sentence when nothing has happened yet."""
    if not moments:
        return Markup('<p class="empty">Nobody has accepted an assignment yet.</p>')
    lines = series(moments)
    now = now or datetime.now(UTC)
    start = min(line.times[0] for line in lines if line.times)
    end = max(now, max(line.times[-1] for line in lines if line.times))
    span = max(end - start, timedelta(minutes=1))
    top = max(goal, max(line.total for line in lines), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(moment: datetime) -> float:
        return LEFT + plot_w * ((moment - start) / span)

    def y(count: float) -> float:
        return TOP + plot_h * (1 - count / top)

    parts = [
        (
            f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            'aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">'
        ),
        '<title id="chart-title">Cumulative allocations and submissions over time</title>',
        f'<line class="axis" x1="{LEFT}" y1="{y(0):.1f}" x2="{WIDTH - RIGHT}" y2="{y(0):.1f}"/>',
        f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{y(0):.1f}"/>',
    ]
    if goal:
        parts.append(
            f'<line class="goal" x1="{LEFT}" y1="{y(goal):.1f}" x2="{WIDTH - RIGHT}" '
            f'y2="{y(goal):.1f}"/>'
        )
    for value in sorted({0, top // 2, top}):
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{value}</text>"
        )
    for fraction in (0.0, 0.5, 1.0):
        moment = start + span * fraction
        anchor = {0.0: "start", 0.5: "middle", 1.0: "end"}[fraction]
        parts.append(
            f'<text class="tick" x="{x(moment):.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}">'
            f"{escape(_time_label(moment, span))}</text>"
        )
    for line in lines:
        if not line.times:
            continue
        points = [(x(start), y(0))]
        for count, moment in enumerate(line.times, start=1):
            points += [(x(moment), y(count - 1)), (x(moment), y(count))]
        points.append((x(end), y(line.total)))
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(
            f'<polyline class="series series-{escape(line.name)}" points="{path}">'
            f"<title>{escape(line.title)}: {line.total}</title></polyline>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
