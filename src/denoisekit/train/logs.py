"""The run folder's CSV logs, kept consistent with the checkpoints across resumes."""
from __future__ import annotations

import csv
import warnings
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


def open_logs(run_dir: Path, step: int, header: list, tensorboard: bool):
    """((metrics.csv file, its writer), a TensorBoard writer or None) for a run at `step`: a fresh run starts fresh
    logs, a resumed one appends after dropping the rows logged past its checkpoint (before a kill)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "metrics.csv"
    new = step == 0 or not path.exists()
    if not new:
        truncate_log(path, step)
        truncate_log(run_dir / "eval.csv", step)
        match_header(path, header)
    f = open(path, "w" if new else "a", newline="")
    writer = csv.writer(f)
    if new:
        writer.writerow(header)
    tb = None
    if tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # an optional extra: say so once, and log to the CSV only
            warnings.warn("train.tensorboard: the tensorboard package is not installed, so the scalars go to "
                          "metrics.csv only; pip install tensorboard, or set train.tensorboard: false", stacklevel=3)
        else:
            tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step or None)
    return (f, writer), tb
