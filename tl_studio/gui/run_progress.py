"""How far a run folder got, read from its small text files (never the checkpoint: that would import
torch and load the weights just to ask a question): the planned epochs from ``config.json``, the
finished epochs from ``metrics.csv``, and the run's own verdict from ``status.json`` when the engine
wrote one (running / done / stopped / failed)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

LAST_CHECKPOINT = "last.ckpt"


@dataclass(frozen=True)
class RunProgress:
    planned_epochs: int
    finished_epochs: int
    state: str  # "done", "stopped", "failed", "running", or "unknown" without status.json
    resumable: bool  # a checkpoint of a finished epoch exists

    @property
    def finished(self) -> bool:
        if self.state in ("done", "completed", "early-stopped"):
            return True
        if self.state in ("stopped", "failed", "running"):
            return False
        return self.finished_epochs >= self.planned_epochs  # no status.json: the epochs say it

    def describe(self) -> str:
        done = f"{self.finished_epochs} of {self.planned_epochs} epochs done"
        if self.finished:
            return f"This run has finished ({done})."
        why = {"stopped": "it was stopped", "failed": "it ended with an error",
               "running": "it did not end cleanly"}.get(self.state, "it did not reach its planned epochs")
        return f"This run can continue: {done}; {why}."


def read_run_progress(run_dir: Path) -> RunProgress:
    run_dir = Path(run_dir)
    planned = _planned_epochs(run_dir / "config.json")
    finished = _finished_epochs(run_dir / "metrics.csv")
    return RunProgress(planned, finished, _state(run_dir / "status.json"),
                       (run_dir / LAST_CHECKPOINT).is_file())


def _planned_epochs(path: Path) -> int:
    try:
        return int(json.loads(path.read_text(encoding="utf-8")).get("epochs", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def _finished_epochs(path: Path) -> int:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            epochs = [int(row["epoch"]) for row in csv.DictReader(handle) if row.get("epoch", "").isdigit()]
    except (OSError, ValueError, KeyError):
        return 0
    return max(epochs, default=0)


def _state(path: Path) -> str:
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    state = status.get("state") or status.get("status") if isinstance(status, dict) else None
    return str(state) if state else "unknown"
