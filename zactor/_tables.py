"""Rows and plain-text tables for people: columns sized to their contents, numbers on the
right."""

from __future__ import annotations

from typing import Any


class Row(dict):
    """A dict whose keys are also attributes (``row.state`` as ``row["state"]``), as Ray's
    state dataclasses and its init context allow both. It serialises as the dict it is."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    """``rows`` under ``headers``; the columns numbered in ``right`` align to the right."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])
