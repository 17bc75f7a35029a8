"""Run history: every run folder under some roots, one summary per run, which run is best, and what
differs between runs' configs.

A run folder is recognised by its files (run_folder.py), not by a registry that could drift out of
sync with the disk. Older runs (written before status.json and events.jsonl existed) are listed too,
their status derived from what is there. Nothing here imports torch or unpickles a checkpoint: a
table of 300 runs reads only small text files.

What the user adds to a run (a star, a note, a display name) lives in a small sidecar file in the
run folder itself (SIDECAR), so it travels with the folder and never touches the engine's files.
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tl_studio.core import run_folder as names
from tl_studio.core.errors import UserError
from tl_studio.core.run_folder import RunFolder
from tl_studio.core.wording import counted

SIDECAR = names.ANNOTATIONS
# A folder holding any of these holds a run (the same rule as RunFolder.is_run, on one directory listing).
RUN_MARKERS = frozenset((names.STATUS, *names.RESULT_FILES))
# How far below a root runs are looked for (a root may be a runs folder, or a folder of runs folders).
MAX_DEPTH = 3
# Two runs whose best val accuracies are this close count as tied; then val loss, then time decide.
TIE_ACCURACY = 0.005  # 0.5 percentage points
# The first bytes of events.jsonl are enough to find FitStart (the device); the file can grow to MBs.
EVENTS_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class RunSummary:
    """One row of the run table. Accuracies are fractions (0.95), times seconds since the epoch."""
    path: str
    name: str  # the user's name for the run (sidecar), else the folder name
    status: str  # running / done / stopped / failed
    reason: str = ""
    created: float | None = None
    data_set: str = ""
    data_dir: str = ""
    model: str = ""
    freeze: str = ""
    schedule: str = ""
    lr: float | None = None
    epochs_done: int = 0
    planned_epochs: int = 0
    best_epoch: int | None = None
    best_val_acc: float | None = None
    best_val_loss: float | None = None  # the val loss of the best epoch (the model the run keeps)
    train_seconds: float | None = None
    images_per_s: float | None = None
    device: str = ""
    has_model_file: bool = False
    resumable: bool = False  # stopped or failed, with a checkpoint of a finished epoch: it can continue
    extendable: bool = False  # finished, with its last checkpoint: more epochs can train it further
    starred: bool = False
    note: str = ""
    progress: str = ""  # a running run: where it is now, from the end of its events log
    config: dict = field(default_factory=dict, compare=False)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("config")
        return data


# ---- finding runs ---------------------------------------------------------------------------------
def default_runs_root() -> Path:
    """Where runs go unless told otherwise, in the app and the CLI alike: $TL_STUDIO_RUNS_DIR, else
    "TL Studio/runs" in the user's Documents folder, found as Qt finds it for the app (the folder
    xdg-user-dirs names on Linux, ~/Dokumente in a German desktop; the Documents known folder on
    Windows, wherever it was moved to), so that a run the CLI makes is one the Runs step lists."""
    override = os.environ.get("TL_STUDIO_RUNS_DIR")
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_documents_dir()) / "TL Studio" / "runs"


def new_run_dir(root: Path, dataset_name: str, model: str, *, create: bool = False) -> Path:
    """A fresh, readable run folder under ``root``, e.g. ``flowers-resnet18-20261203-154501``; never an
    existing one (nothing is overwritten). With ``create`` the folder is made here, so that two commands
    started in the same second each get their own (the one that makes it first keeps the name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", dataset_name).strip("-.") or "dataset"
    base = Path(root) / f"{safe}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, number = base, 2
    while True:
        if create:
            try:
                candidate.mkdir(parents=True)
                return candidate
            except FileExistsError:
                pass
        elif not candidate.exists():
            return candidate
        candidate = base.with_name(f"{base.name}-{number}")
        number += 1


def discover_runs(roots, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Every run folder at or below ``roots`` (a root may itself be a run), sorted, each once.
    Hidden folders are skipped, and a run's own sub-folders are not searched."""
    found: dict[str, Path] = {}
    for root in roots:
        _walk(Path(root).expanduser(), max_depth, found)
    return [found[key] for key in sorted(found)]


def _walk(folder: Path, depth: int, found: dict[str, Path]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:  # missing, unreadable or not a folder: nothing to list there
        return
    if any(entry.name in RUN_MARKERS and entry.is_file() for entry in entries):
        found.setdefault(str(folder.resolve()), folder)
        return
    if depth <= 0:
        return
    for entry in entries:
        if not entry.name.startswith(".") and entry.is_dir():
            _walk(Path(entry.path), depth - 1, found)


def list_runs(roots) -> list[RunSummary]:
    """A summary of every run under ``roots``, newest first. A folder that cannot be read is left
    out rather than stopping the listing."""
    summaries = []
    for path in discover_runs(roots):
        try:
            summaries.append(summarize_run(path))
        except OSError:
            continue
    return sorted(summaries, key=lambda s: s.created or 0.0, reverse=True)


# ---- one run --------------------------------------------------------------------------------------
def _run_images_per_s(epoch_rates: list[float]) -> float | None:
    """The run's training images per second: the images it trained on (each once an epoch) over the time
    its training passes took. With the same images every epoch that is the harmonic mean of the epochs'
    rates; a median would call a frozen-backbone run (a slow first epoch that computes the features, then
    epochs of milliseconds on them) thousands of images a second, which no one could check with a clock."""
    return statistics.harmonic_mean(epoch_rates) if epoch_rates else None


def summarize_run(path) -> RunSummary:
    folder = RunFolder(path)
    config = read_config(folder)
    metrics = read_metrics(folder)
    status = folder.status()
    extras = read_sidecar(folder.path)
    best_epoch, best_acc = _best(status, metrics)
    best_row = next((row for row in metrics if row.get("epoch") == best_epoch), None)
    planned = (status.planned_epochs if status else 0) or int(config.get("epochs") or 0)
    epochs_done = max((status.epochs_done if status else 0), len(metrics))
    state, reason = _state(folder, status, epochs_done, planned)
    model_file = folder.file(names.MODEL_FILE)
    if names.NO_MODEL_FILE_YET in reason and model_file.is_file():  # `export` wrote it after the run ended
        reason = f"{reason.split(names.NO_MODEL_FILE_YET)[0]}; model saved to {model_file}."
    data_dir = (status.data_dir if status else "") or str(config.get("data_dir") or "")
    seconds = [row["seconds"] for row in metrics if row.get("seconds") is not None]
    speeds = [row["train_images_per_s"] for row in metrics if row.get("train_images_per_s")]
    return RunSummary(
        path=str(folder.path), name=extras.get("name") or folder.path.name, status=state, reason=reason,
        created=(status.started if status and status.started else None) or _created(folder),
        data_set=Path(data_dir).name if data_dir else "", data_dir=data_dir,
        model=(status.model if status else "") or str(config.get("model") or ""),
        freeze=str(config.get("freeze", "")), schedule=str(config.get("schedule", "")), lr=resolved_lr(config),
        epochs_done=epochs_done, planned_epochs=planned, best_epoch=best_epoch, best_val_acc=best_acc,
        best_val_loss=best_row.get("val_loss") if best_row else None,
        train_seconds=sum(seconds) if seconds else None,
        images_per_s=_run_images_per_s(speeds),
        device=read_device(folder) or str(config.get("device") or ""),
        has_model_file=model_file.is_file(),
        resumable=state in ("stopped", "failed") and folder.file(names.LAST_CHECKPOINT).is_file(),
        extendable=state == "done" and folder.file(names.LAST_CHECKPOINT).is_file(),
        starred=bool(extras.get("starred")), note=str(extras.get("note") or ""),
        progress=live_progress(folder) if state == "running" else "", config=config)


def _best(status, metrics: list[dict]) -> tuple[int | None, float | None]:
    if status and status.best_epoch is not None:
        return status.best_epoch, status.best_val_acc
    scored = [row for row in metrics if row.get("val_acc") is not None]
    if not scored:
        return None, None
    # the engine keeps the first epoch that reached the best accuracy
    best = max(scored, key=lambda row: (row["val_acc"], -row["epoch"]))
    return best["epoch"], best["val_acc"]


def _state(folder: RunFolder, status, epochs_done: int, planned: int) -> tuple[str, str]:
    if status is not None:
        return status.state, status.reason
    # A run written before status.json existed: what it left behind says how it ended.
    if planned and epochs_done >= planned:
        return "done", ""
    if folder.file(names.LAST_CHECKPOINT).is_file() or epochs_done:
        return "stopped", f"Ended after {epochs_done} of {planned or '?'} epochs (an older run without a status file)."
    return "stopped", "No epoch finished (an older run without a status file)."


def _created(folder: RunFolder) -> float | None:
    """Older runs: config.json is written when the run starts, so its time is the run's date."""
    for name in (names.CONFIG, names.METRICS):
        try:
            return folder.file(name).stat().st_mtime
        except OSError:
            continue
    try:
        return folder.path.stat().st_mtime
    except OSError:
        return None


def read_config(folder: RunFolder) -> dict:
    """config.json as a plain dict: a history must list runs made by other versions too, whose
    configs may hold settings this version does not know (TrainConfig.load would refuse them)."""
    try:
        data = json.loads(folder.file(names.CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolved_lr(config: dict) -> float | None:
    """The learning rate the run trained at (TrainConfig.trained_lr): the config's, else the default for
    its freeze depth and schedule (the fine-tune schedule's second phase, not its head phase)."""
    from tl_studio.core.config import TrainConfig

    if config.get("lr") is not None:
        return float(config["lr"])
    if not config:
        return None
    return TrainConfig(freeze=str(config.get("freeze", "all")), optimizer=str(config.get("optimizer", "adamw")),
                       schedule=str(config.get("schedule", "onecycle"))).trained_lr()


def read_metrics(folder: RunFolder) -> list[dict]:
    """metrics.csv rows (epoch an int, other values floats, an empty cell None). RunFolder.metrics()
    is used when it can read the file; its parser rejects empty cells, which newer runs write for
    values an epoch did not have (feature_images_per_s), so those files are read here."""
    try:
        return folder.metrics()
    except (ValueError, OSError):
        pass
    try:
        with open(folder.file(names.METRICS), newline="", encoding="utf-8") as handle:
            return [_metric_row(row) for row in csv.DictReader(handle)]
    except (OSError, ValueError):
        return []


def _metric_row(row: dict) -> dict:
    parsed = {}
    for key, value in row.items():
        if key is None or value in (None, ""):
            parsed[key] = None
            continue
        try:
            parsed[key] = int(value) if key == "epoch" else float(value)
        except ValueError:
            parsed[key] = None
    return parsed


def read_device(folder: RunFolder) -> str:
    """The device the run trained on, from the FitStart event near the top of events.jsonl."""
    try:
        with open(folder.file(names.EVENTS), "rb") as handle:
            head = handle.read(EVENTS_HEAD_BYTES)
    except OSError:
        return ""
    for line in head.split(b"\n")[:-1]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "FitStart":
            return str(record.get("device") or "")
    return ""


# The last events of a live run are near the end of events.jsonl: only that much is read.
EVENTS_TAIL_BYTES = 16 * 1024


def live_progress(folder: RunFolder) -> str:
    """Where a running run is now, from the last events it logged: "epoch 4, batch 30/80",
    "features 300/1200" (the frozen backbone's cache filling), or "" when nothing is logged yet."""
    try:
        with open(folder.file(names.EVENTS), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - EVENTS_TAIL_BYTES))
            tail = handle.read()
    except OSError:
        return ""
    for line in reversed(tail.split(b"\n")[1:-1]):  # the first piece may be cut, the last incomplete
        try:
            record = json.loads(line)
        except ValueError:
            continue
        kind = record.get("event") if isinstance(record, dict) else None
        if kind == "BatchEnd":
            return f"epoch {record.get('epoch')}, batch {record.get('batch')}/{record.get('num_batches')}"
        if kind == "FeatureProgress":
            return f"features {record.get('done')}/{record.get('total')}"
        if kind == "EpochEnd":
            return f"epoch {record.get('epoch')} done"
    return ""


# ---- star, note, name (the sidecar) ---------------------------------------------------------------
def read_sidecar(run_path) -> dict:
    try:
        data = json.loads((Path(run_path) / SIDECAR).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def annotate_run(run_path, **changes) -> dict:
    """Sets ``name``, ``note`` and/or ``starred`` for a run (an empty name goes back to the folder
    name). Only the sidecar is written, atomically; the run's own files are never touched."""
    from tl_studio.core.fileio import atomic_write_text

    unknown = set(changes) - {"name", "note", "starred"}
    if unknown:
        raise ValueError(f"unknown run annotation(s): {', '.join(sorted(unknown))}")
    path = Path(run_path)
    data = {**read_sidecar(path), **changes}
    data = {key: value for key, value in data.items() if value not in ("", None, False)}
    try:
        atomic_write_text(path / SIDECAR, json.dumps(data, indent=2) + "\n")
    except OSError as error:
        raise UserError(f"Could not save the note for {path.name} ({error.strerror or error}); "
                        f"check that the run folder can be written.") from None
    return data


def with_annotations(summary: RunSummary) -> RunSummary:
    """The summary again with its sidecar re-read (after annotate_run)."""
    extras = read_sidecar(summary.path)
    return replace(summary, name=extras.get("name") or Path(summary.path).name,
                   starred=bool(extras.get("starred")), note=str(extras.get("note") or ""))


# ---- which run is best ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BestRun:
    run: RunSummary
    why: str  # one sentence

    @property
    def lacks_model_file(self) -> bool:
        """Stopped before its model file was written: `predict` on it would find none; each front end
        says what writes it (the Runs step's Open, `tl-studio export`)."""
        return self.run.status != "running" and not self.run.has_model_file


def rank_runs(runs) -> list[RunSummary]:
    """Runs with a val accuracy, best first: highest accuracy; among runs within TIE_ACCURACY of the
    best, the lowest val loss, then the shortest train time. The rest follow by accuracy."""
    scored = [run for run in runs if run.best_val_acc is not None]
    if not scored:
        return []
    top = max(run.best_val_acc for run in scored)
    tied = [run for run in scored if top - run.best_val_acc <= TIE_ACCURACY]
    rest = [run for run in scored if top - run.best_val_acc > TIE_ACCURACY]
    inf = float("inf")
    tied.sort(key=lambda r: (r.best_val_loss if r.best_val_loss is not None else inf,
                             r.train_seconds if r.train_seconds is not None else inf))
    rest.sort(key=lambda r: -r.best_val_acc)
    return tied + rest


def best_run(runs) -> BestRun | None:
    ranked = rank_runs(runs)
    if not ranked:
        return None
    best = ranked[0]
    top = max(r.best_val_acc for r in ranked)
    tied = [r for r in ranked[1:] if top - r.best_val_acc <= TIE_ACCURACY]
    why = f"{best.name}: best val accuracy {best.best_val_acc:.1%}"
    if tied:
        loss = f"{best.best_val_loss:.4f}" if best.best_val_loss is not None else "?"
        why = (f"{best.name}: val accuracy {best.best_val_acc:.1%}, within 0.5 points of "
               f"{len(tied)} other run{'s' if len(tied) > 1 else ''}, with the lowest val loss ({loss})")
        if same := sum(run.best_val_loss == best.best_val_loss for run in tied):
            # the training time breaks the tie of the loss only: "and the shortest training" stood for a run
            # of 13 s beside one of 7 s with a higher loss
            why += (f", which {counted(same, 'other run')} {'has' if same == 1 else 'have'} too, and the shortest "
                    f"training of {'the two' if same == 1 else 'those'}")
    why += "."
    if len({_validated_on(run) for run in ranked}) > 1:  # 100 % of 9 images is not better than 95 % of 153
        why += (" These runs were validated on different images (another data set, split share or seed), so "
                "their accuracies compare only roughly.")
    if best.status == "running":
        why += " It is still training, so this can change."
    return BestRun(best, why)


def _validated_on(run) -> tuple:
    """What decides a run's validation images: its data set folder and split settings."""
    from tl_studio.core.config import split_settings

    return run.data_dir, *split_settings(run.config or {}).values()


# ---- what differs between configs -----------------------------------------------------------------
def config_diff(configs: list[dict]) -> dict[str, list]:
    """Setting -> each run's value, for the settings whose values are not all equal (a setting
    missing from a config counts as None). Keys in a stable, readable order. The learning rate is
    compared as the rate each run used: a default (None) is the rate of its freeze depth and optimizer,
    so 0.001 given and the default 0.001 are the same and two defaults of other depths differ; the
    values returned are the configs' own, so a default can still be shown as one."""
    keys: list[str] = []
    for config in configs:
        keys += [key for key in config if key not in keys]
    compared = [{**config, "lr": resolved_lr(config)} if config else config for config in configs]
    return {key: [config.get(key) for config in configs] for key in keys
            if len({json.dumps(config.get(key), sort_keys=True) for config in compared}) > 1}


def summary_diff(runs: list[RunSummary], columns) -> list[str]:
    """The columns whose values are not all equal across ``runs`` ("only columns that differ")."""
    return [column for column in columns if len({repr(getattr(run, column)) for run in runs}) > 1]


def run_by_path(path) -> RunSummary:
    """One run, with a sentence when the folder holds none."""
    folder = RunFolder(path)
    if not folder.path.is_dir() or not folder.is_run():
        raise UserError(f"{folder.path} is not a run folder (no {names.STATUS} or {names.METRICS}); "
                        f"give the folder a training run wrote.")
    return summarize_run(folder.path)


def format_age(created: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else ""
