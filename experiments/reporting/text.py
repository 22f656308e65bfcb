"""Number and table formatting shared by the Markdown report, the claims and the plots."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experiments.reporting.stats import Group


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def signed(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:+.{digits}f}"


def p_value(value: float | None) -> str:
    """A p-value in two significant digits (scientific below 0.001)."""
    return "n/a" if value is None else f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def pct_pm(group: dict[str, Any] | None) -> str:
    if not group or group.get("mean") is None:
        return "—"
    return f"{pct(group['mean'])} ± {pct(group.get('std'))}"


def fmt_key(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


def key_label(group: Group, keys: Sequence[str]) -> str:
    return ", ".join(fmt_key(k, group.get(k)) if k == "strategy" else f"{k}={fmt_key(k, group.get(k))}" for k in keys)
