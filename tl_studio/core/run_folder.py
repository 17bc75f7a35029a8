"""A run folder: the one place that knows its file names and how to read and write them.

    config.json    the resolved TrainConfig (written when the run starts)
    status.json    running / done / stopped / failed, with its reason, times, host and versions
    events.jsonl   every engine event as one JSON line, appended and flushed as it happens
    metrics.csv    one row per finished epoch
    last.ckpt      everything needed to resume (after every epoch)
    best.ckpt      the best epoch's weights
    model.pt2      the exported best model
    control.json   a stop/pause/continue request for a run in other processes (several
                   processes started by torchrun: the launcher or the window writes it, rank 0 reads it)
    .lock          held (flock) by the process writing the run

Readers (the CLI, the GUI, a run-history table) use ``RunFolder(path)``: ``is_run()``, ``status()``,
``config()``, ``metrics()``, ``events()``. Nothing here imports torch, so reading is cheap.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import json
import os
import platform
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from tl_studio.core.errors import UserError

CONFIG = "config.json"
STATUS = "status.json"
EVENTS = "events.jsonl"
METRICS = "metrics.csv"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best.ckpt"
MODEL_FILE = "model.pt2"
CONTROL = "control.json"
LOCK = ".lock"
ANNOTATIONS = ".tl_studio_run.json"  # the user's name, star and note for the run (run_history.py)

# What a run leaves behind once it has finished an epoch: a folder holding any of these holds a run.
RESULT_FILES = (METRICS, LAST_CHECKPOINT, BEST_CHECKPOINT, MODEL_FILE)
# Every file a run writes (what --overwrite may replace; nothing else in the folder is touched).
RUN_FILES = (CONFIG, STATUS, EVENTS, CONTROL, *RESULT_FILES)
# The other files `tl-studio export RUN` writes into the run folder by default (export_formats' default_file):
# made from the run, so --overwrite replaces them with it (left, they would be the old run's model).
EXPORTED_FILES = ("model.onnx", "model.ts", "model.int8.onnx")

STATES = ("running", "done", "stopped", "failed")
REQUESTS = ("stop", "pause", "continue")


def export_command(run_dir) -> str:
    """The command that writes the model file of a run stopped before it, as every message gives it."""
    return f"tl-studio export {shlex.quote(str(run_dir))}"


NO_MODEL_FILE_YET = "; no model file yet: "


def export_later_clause(run_dir) -> str:
    """The end of a stopped run's reason when it stopped before its model file (a second Ctrl-C): the
    command that writes it. The Runs step shows its own way instead (its Open button writes it), and
    once the file is written the history says so (run_history.summarize_run)."""
    return f"{NO_MODEL_FILE_YET}{export_command(run_dir)} makes it from the best epoch."


@dataclass(frozen=True)
class RunStatus:
    """status.json. ``state`` is one of STATES; ``reason`` is one sentence for stopped and failed runs
    (and the engine's summary for done ones). Times are seconds since the epoch (UTC)."""
    state: str
    reason: str = ""
    started: float | None = None
    ended: float | None = None
    host: str = ""
    pid: int | None = None
    tl_studio_version: str = ""
    torch_version: str = ""
    python_version: str = ""
    planned_epochs: int = 0
    epochs_done: int = 0
    best_epoch: int | None = None
    best_val_acc: float | None = None
    model: str = ""
    data_dir: str = ""

    @property
    def resumable(self) -> bool:
        """A stopped or failed run with epochs left can continue with --resume."""
        return self.state in ("stopped", "failed") and 0 < self.epochs_done < self.planned_epochs


def new_status(config, *, epochs_done: int = 0) -> RunStatus:
    """The status of a run that starts now in this process."""
    import torch

    from tl_studio import __version__

    return RunStatus(state="running", started=time.time(), host=socket.gethostname(), pid=os.getpid(),
                     tl_studio_version=__version__, torch_version=torch.__version__,
                     python_version=platform.python_version(), planned_epochs=config.epochs,
                     epochs_done=epochs_done, model=config.model, data_dir=config.data_dir)


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    # ---- reading ----------------------------------------------------------------------------------
    def is_run(self) -> bool:
        """True when a run was started here (even one that never finished an epoch)."""
        return any(self.file(name).is_file() for name in (STATUS, *RESULT_FILES))

    def model_file_keep(self) -> float | None:
        """The share of validation images the unknown rule of this run's model.pt2 keeps, read from the
        archive's tl_studio.json (JSON, never unpickled); None when there is no such file or record."""
        import zipfile

        try:
            with zipfile.ZipFile(self.file(MODEL_FILE)) as archive:
                name = next(n for n in archive.namelist() if n.endswith("/extra/tl_studio.json"))
                rule = json.loads(archive.read(name)).get("unknown") or {}
            return float(rule["keep"])
        except (OSError, zipfile.BadZipFile, StopIteration, ValueError, KeyError, TypeError, AttributeError):
            return None

    def replacing_model_file_changes_it(self, keep: float) -> str | None:
        """Writing this run's model.pt2 again with ``keep`` writes the same best epoch: harmless, and
        what the Export step's default does. With another share kept, predict and evaluate answer
        differently for this run afterwards, so the user must say so: the sentence why, else None."""
        recorded = self.model_file_keep()
        if recorded is None or abs(recorded - keep) < 1e-9:
            return None
        return (f"{self.file(MODEL_FILE)} is this run's model file, and it keeps {recorded:.0%} of the validation "
                f"images known; written again keeping {keep:.0%}, it changes what predict and evaluate answer "
                f"for this run")

    def has_results(self) -> bool:
        """True when a run here finished at least one epoch (something a new run would overwrite)."""
        return any(self.file(name).is_file() for name in RESULT_FILES)

    def status(self) -> RunStatus | None:
        """None when there is no readable status. A "running" status whose writer is gone (killed,
        crashed, machine restarted) is reported as "stopped", since that is what it is now."""
        try:
            data = json.loads(self.file(STATUS).read_text(encoding="utf-8"))
            known = {f.name for f in dataclasses.fields(RunStatus)}
            status = RunStatus(**{k: v for k, v in data.items() if k in known})
        except (OSError, ValueError, TypeError):
            return None
        if status.state == "running" and not self.is_locked():
            return dataclasses.replace(status, state="stopped",
                                       reason="The training process ended without finishing (killed or crashed).")
        return status

    def config(self):
        """The run's TrainConfig, or None when config.json is missing."""
        from tl_studio.core.config import TrainConfig

        return TrainConfig.load(self.file(CONFIG)) if self.file(CONFIG).is_file() else None

    def metrics(self) -> list[dict]:
        """metrics.csv as rows: epoch an int, every other column a float (None where empty)."""
        def typed(key: str, value: str):
            return None if value in ("", None) else int(value) if key == "epoch" else float(value)

        try:
            with open(self.file(METRICS), newline="", encoding="utf-8") as handle:
                return [{key: typed(key, value) for key, value in row.items()} for row in csv.DictReader(handle)]
        except FileNotFoundError:
            return []

    def events(self) -> list[dict]:
        """events.jsonl, parsed. A line still being written (no newline yet, or cut short by a crash)
        is left out, so a live run can be followed by reading the file again."""
        try:
            text = self.file(EVENTS).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        found = []
        for line in text.split("\n")[:-1]:  # the part after the last newline is incomplete
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def last_event(self, name: str) -> dict | None:
        """The last ``name`` record of events.jsonl (FitStart, ...), without parsing the run's every
        batch: a long run logs hundreds of thousands."""
        try:
            text = self.file(EVENTS).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        marker = f'"event": "{name}"'
        for line in reversed(text.split("\n")[:-1]):  # the part after the last newline is incomplete
            if marker in line:
                try:
                    return json.loads(line)
                except ValueError:
                    continue
        return None

    def got_past_set_up(self) -> bool:
        """A result file, or a training start logged: a run that failed in its set-up (a freeze depth
        the model does not have, weights that cannot be downloaded) leaves only its failure."""
        if any(self.file(name).is_file() for name in RESULT_FILES):
            return True
        return self.last_event("FitStart") is not None

    def remove_if_never_started(self, keep_folder: bool = False) -> bool:
        """For a folder made for a run that ended before it started (the data folder missing, the weights
        not downloadable, a setting the model refuses): removes what that run wrote (its config, status
        and events with the failure, which the command has said; the lock) and the folder, if nothing
        else is in it and not ``keep_folder`` (one the user had made). A folder that holds a run that got
        past its set-up keeps everything, and anything else in it is kept."""
        if not self.path.is_dir() or self.got_past_set_up():
            return False
        for name in (*RUN_FILES, LOCK):
            try:
                self.file(name).unlink(missing_ok=True)
            except OSError:  # a read-only folder (the run could not write there either): nothing to tidy
                pass
        if keep_folder:
            return False
        try:
            self.path.rmdir()
        except OSError:  # something else is in it
            return False
        return True

    # ---- the lock ---------------------------------------------------------------------------------
    def is_locked(self) -> bool:
        """True while some process holds this folder's write lock."""
        try:
            RunLock(self.file(LOCK)).probe()
        except RunLocked:
            return True
        return False

    def lock(self) -> "RunLock":
        """Takes the folder's write lock (until ``release()``); a second writer gets one sentence."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = RunLock(self.file(LOCK))
        try:
            lock.acquire()
        except RunLocked as error:
            raise UserError(_being_written(self.path, error)) from None
        except OSError as error:  # a lock file left by another user, or made read-only
            raise UserError(f"The run's lock file {self.file(LOCK)} cannot be opened ({error.strerror}); if no "
                            "run is training there, delete that file, then try again.") from None
        return lock

    # ---- starting a run ---------------------------------------------------------------------------
    def check_new_run(self, *, resume: bool, overwrite: bool, lock_held: bool = False) -> None:
        """A new run only goes into a new or empty folder, or one left by a run that never finished an
        epoch; ``overwrite`` replaces an earlier run's files (never anything else in the folder).
        Only checks: nothing is written or removed (see ``start_run``)."""
        if not lock_held and self.path.is_dir():
            # said first: "add --resume ... or --overwrite" for a run still training led to two refusals
            try:
                RunLock(self.file(LOCK)).probe()
            except RunLocked as error:
                raise UserError(_being_written(self.path, error)) from None
        if resume:
            if overwrite:
                raise UserError("--resume continues the run in the folder and --overwrite replaces it; give one.")
            return
        if not self.path.is_dir():
            return
        if self.has_results() and not overwrite:
            raise UserError(f"{self.path} already holds a run; add --resume to continue it, --overwrite to "
                            f"replace it, or choose another output folder.")
        own = (*RUN_FILES, *EXPORTED_FILES) if overwrite else RUN_FILES
        foreign = [p.name for p in self.path.iterdir() if p.name not in own and not p.name.startswith(".")]
        if foreign and overwrite and self.has_results():  # asked to replace a run: say what stands in the way
            raise UserError(f"{self.path} also holds {foreign[0]}, which is not a file of the run, and --overwrite "
                            f"replaces only the run's own files; move it out of the folder, then run again.")
        if foreign:
            raise UserError(f"{self.path} is not empty (it holds {foreign[0]}); choose a new or empty output "
                            f"folder for the run.")

    def start_run(self, *, resume: bool, overwrite: bool) -> None:
        """With the lock held: check again (another run may have written here meanwhile), then remove
        the files of an earlier run that never finished an epoch, or of the one --overwrite replaces."""
        self.check_new_run(resume=resume, overwrite=overwrite, lock_held=True)
        if not resume:
            # the name, star and note were the replaced run's: a 1-epoch test run must not inherit them
            replaced = (ANNOTATIONS, *EXPORTED_FILES) if overwrite and self.has_results() else ()
            for name in (*RUN_FILES, *replaced):
                self.file(name).unlink(missing_ok=True)

    # ---- writing (the engine's built-in callbacks, see run_writers.py) -----------------------------
    def unwritable_reason(self, error: BaseException) -> str | None:
        """One sentence when ``error`` came from this folder being moved, deleted or made read-only while
        its run trained (a user's doing, not a bug: no traceback); else None."""
        if not isinstance(error, OSError):
            return None
        if not self.path.is_dir():
            return (f"The run folder {self.path} was moved or deleted while the run trained, so nothing more "
                    "could be saved there and the run stopped; if you moved it, resume it from its new place "
                    "(train --resume --out FOLDER, or Resume in the Runs step).")
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return (f"The run folder {self.path} can no longer be written ({error.strerror}), so the run "
                    "stopped; make it writable again, then resume the run.")
        return None

    def write_status(self, status: RunStatus) -> None:
        from tl_studio.core.fileio import atomic_write_text

        atomic_write_text(self.file(STATUS), json.dumps(dataclasses.asdict(status), indent=2) + "\n",
                          make_folder=False)

    def mark_ended(self, reason: str) -> bool:
        """The run's processes are gone while status.json still says "running" (the writing process
        was killed): record it as failed with ``reason``. False when the status said something else."""
        try:
            data = json.loads(self.file(STATUS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if data.get("state") != "running" or self.is_locked():
            return False
        known = {f.name for f in dataclasses.fields(RunStatus)}
        status = RunStatus(**{k: v for k, v in data.items() if k in known})
        self.write_status(dataclasses.replace(status, state="failed", reason=reason, ended=time.time()))
        return True

    # ---- requests to a run in other processes ------------------------------------------------------
    def request(self, action: str) -> None:
        """Asks the run's processes to stop, pause or continue (read by ``requested()`` in rank 0)."""
        from tl_studio.core.fileio import atomic_write_text

        if action not in REQUESTS:
            raise ValueError(f"unknown request {action!r}")
        atomic_write_text(self.file(CONTROL), json.dumps({"request": action, "time": time.time()}) + "\n")

    def requested(self, since: float = 0.0) -> str | None:
        """The latest request made after ``since`` (seconds since the epoch), or None."""
        try:
            data = json.loads(self.file(CONTROL).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("request") in REQUESTS and float(data.get("time", 0)) >= since:
            return data["request"]
        return None

    def clear_requests(self) -> None:
        self.file(CONTROL).unlink(missing_ok=True)


def _being_written(path: Path, error: "RunLocked") -> str:
    return (f"{path} is being written by another training run ({error}); wait for it to finish or choose another "
            "output folder.")


class RunLocked(Exception):
    """The lock is held by another process (the message says which, when known)."""


class RunLock:
    """An advisory lock on a file (``flock``): released when the process ends, however it ends, so a
    killed run never leaves a stale lock behind. Where flock does not exist the lock is a no-op."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.handle = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; a second writer is not detected there
            return
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise RunLocked(f"process {holder}" if holder else "another process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self.handle = handle

    def probe(self) -> None:
        """Raises RunLocked while another process holds the lock; changes nothing (no file is made, and
        the holder's name in it stays)."""
        try:
            import fcntl
        except ImportError:
            return
        try:
            handle = open(self.path, encoding="utf-8")
        except OSError:  # no lock file: no run has written here
            return
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = handle.read().strip()
                raise RunLocked(f"process {holder}" if holder else "another process") from None
            fcntl.flock(handle, fcntl.LOCK_UN)

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the file releases the flock
            self.handle = None
