"""Server-side SVG charts for the console: no JavaScript, no CDN, nothing to download. Every bar or segment
is a link to the filtered admin list behind it, and carries a <title> (the browser's tooltip) with its
label and value. Values are escaped by `format_html`.

Two shapes cover the dashboard: `hbar_chart` (one row per category, each row a stack of segments, e.g.
participants of a kind by status, or denials by reason code) and `column_chart` (one column per period,
stacked by series, e.g. decisions per week or a monthly compliance share)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# Colour-blind-safe palette (Okabe-Ito), by meaning where a meaning exists.
TONES = {
    "good": "#009E73",
    "bad": "#D55E00",
    "warn": "#E69F00",
    "info": "#0072B2",
    "muted": "#999999",
    "other": "#CC79A7",
    "sky": "#56B4E9",
}


@dataclass(frozen=True)
class Segment:
    label: str
    value: float
    href: str = ""
    tone: str = "info"
    display: str = ""  # how the value reads (default: the number)

    @property
    def text(self) -> str:
        return self.display or f"{self.value:g}"


@dataclass(frozen=True)
class Row:
    label: str
    segments: Sequence[Segment]

    @property
    def total(self) -> float:
        return sum(s.value for s in self.segments)


def _n(value: float) -> str:
    """A coordinate as SVG reads it (format_html escapes its arguments to strings first, so numbers are
    formatted before they are passed)."""
    return f"{value:.1f}"


def _g(value: float) -> str:
    return f"{value:g}"


def _link(href: str, inner: SafeString) -> SafeString:
    if not href:
        return inner
    return format_html('<a href="{}" xlink:href="{}">{}</a>', href, href, inner)


def _legend(segments: Sequence[Segment], y: float) -> SafeString:
    seen: dict[str, str] = {}
    for s in segments:
        seen.setdefault(s.label, TONES.get(s.tone, s.tone))
    items = []
    x = 0.0
    for label, colour in seen.items():
        items.append(
            format_html(
                '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="{}" font-size="11">{}</text>',
                x,
                y,
                colour,
                x + 14,
                y + 9,
                label,
            )
        )
        x += 24 + 7 * len(label)
    return mark_safe("".join(items))  # noqa: S308 (each item built by format_html)


def hbar_chart(rows: Sequence[Row], *, title: str, width: int = 520, legend: bool = True) -> SafeString:
    """Horizontal bars, one per row, stacked by segment; the row total is written at the bar's end."""
    label_w, bar_h, gap, top = 180, 18, 8, 4
    plot_w = width - label_w - 50
    peak = max((r.total for r in rows), default=0) or 1
    parts = []
    for i, row in enumerate(rows):
        y = top + i * (bar_h + gap)
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="12" text-anchor="end">{}</text>',
                label_w - 6,
                y + bar_h - 5,
                row.label,
            )
        )
        x = float(label_w)
        for s in row.segments:
            w = plot_w * s.value / peak
            if w <= 0:
                continue
            rect = format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {} {}</title></rect>',
                _n(x),
                y,
                _n(w),
                bar_h,
                TONES.get(s.tone, s.tone),
                row.label,
                s.label,
                s.text,
            )
            parts.append(_link(s.href, rect))
            x += w
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="12">{}</text>', _n(x + 4), y + bar_h - 5, _g(row.total)
            )
        )
    height = top + len(rows) * (bar_h + gap) + (22 if legend else 0)
    all_segments = [s for r in rows for s in r.segments]
    if legend and all_segments:
        parts.append(
            format_html('<g transform="translate({},0)">{}</g>', label_w, _legend(all_segments, height - 14))
        )
    if not rows:
        parts.append(mark_safe('<text x="10" y="20" font-size="12">No data.</text>'))
        height = 30
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" class="chart" '
        'role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}">{}</svg>',
        title,
        width,
        height,
        width,
        height,
        mark_safe("".join(parts)),  # noqa: S308 (each part built by format_html)
    )


def column_chart(
    columns: Sequence[Row], *, title: str, width: int = 520, height: int = 180, unit_max: float | None = None
) -> SafeString:
    """Vertical columns, one per period (`Row.label` is the period), stacked by segment. `unit_max` fixes
    the scale (100 for percentages); otherwise the tallest column fills the plot."""
    left, bottom, top = 34, 34, 8
    plot_h = height - bottom - top
    n = max(len(columns), 1)
    slot = (width - left - 4) / n
    peak = unit_max or max((c.total for c in columns), default=0) or 1
    parts = [
        format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#ccc"/>'
            '<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>'
            '<text x="{}" y="{}" font-size="10" text-anchor="end">0</text>',
            left,
            top,
            width - 4,
            top,
            left - 4,
            top + 4,
            _g(peak),
            left - 4,
            top + plot_h,
        )
    ]
    for i, col in enumerate(columns):
        x = left + i * slot + slot * 0.15
        w = slot * 0.7
        y = float(top + plot_h)
        for s in col.segments:
            h = plot_h * s.value / peak
            if h <= 0:
                continue
            y -= h
            rect = format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {} {}</title></rect>',
                _n(x),
                _n(y),
                _n(w),
                _n(h),
                TONES.get(s.tone, s.tone),
                col.label,
                s.label,
                s.text,
            )
            parts.append(_link(s.href, rect))
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="9" text-anchor="middle">{}</text>',
                _n(x + w / 2),
                top + plot_h + 12,
                col.label,
            )
        )
    all_segments = [s for c in columns for s in c.segments]
    if all_segments:
        parts.append(
            format_html('<g transform="translate({},0)">{}</g>', left, _legend(all_segments, height - 12))
        )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" class="chart" '
        'role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}">{}</svg>',
        title,
        width,
        height,
        width,
        height,
        mark_safe("".join(parts)),  # noqa: S308 (each part built by format_html)
    )


def figure_table(rows: Sequence[tuple[str, str, str]]) -> SafeString:
    """The same figures as a table (label, value, link), for screen readers and copy-paste."""
    return format_html(
        '<table class="figures"><tbody>{}</tbody></table>',
        format_html_join(
            "",
            '<tr><td>{}</td><td class="num"><a href="{}">{}</a></td></tr>',
            ((label, href, value) for label, value, href in rows),
        ),
    )
