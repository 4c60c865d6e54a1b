"""The run folder's CSV logs, kept consistent with the checkpoints across resumes."""
from __future__ import annotations

import csv
from pathlib import Path

from ..utils import atomic_save


def truncate_log(path: Path, step: int) -> None:
    """Drop the rows of a CSV log written after `step`: a resume continues from that checkpoint, so they recur."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
    if len(keep) != len(rows):
        def write(p):
            with open(p, "w", newline="") as g:
                csv.writer(g).writerows(keep)
        atomic_save(path, write)


def match_header(path: Path, header: list) -> None:
    """Give a resumed log the columns this run writes (a log begun before a loss named its terms lacks them)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if rows and rows[0] != header:
        def write(p):
            with open(p, "w", newline="") as g:
                csv.writer(g).writerows([header] + rows[1:])
        atomic_save(path, write)
