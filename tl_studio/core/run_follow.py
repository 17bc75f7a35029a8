"""Following a run that another process writes: the new lines of its ``events.jsonl``, turned back
into the engine's events (core/events.py), so a front end shows a run in other processes (several
processes started by torchrun) exactly as one it runs itself.

The reverse of ``run_writers.event_record``. Sample thumbnails are not in the log (pixel arrays); they
are made again from the images' paths, once per image.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tl_studio.core import events
from tl_studio.core.run_folder import EVENTS, RunFolder

KINDS = {cls.__name__: cls for cls in (events.FitStart, events.PhaseStart, events.FeatureProgress, events.BatchEnd,
                                       events.EpochEnd, events.SamplePredictions, events.Notice,
                                       events.ImageSkipped, events.RunFinished)}


class RunFollower:
    """``poll()`` returns the events appended since the last call (complete lines only). Starts at
    the end of what is there now, so a resumed run's earlier events are not replayed (its FitStart
    carries the history); a file that was replaced (a run started over) is read from its start."""

    def __init__(self, folder: RunFolder | Path, *, from_start: bool = False):
        self.folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)
        self.path = self.folder.file(EVENTS)
        self._identity = None
        self._offset = 0
        self._partial = b""
        self._thumbnails: dict[str, object] = {}
        if not from_start and self.path.is_file():
            stat = self.path.stat()
            self._identity, self._offset = (stat.st_dev, stat.st_ino), stat.st_size

    def poll(self) -> list:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        identity = (stat.st_dev, stat.st_ino)
        if identity != self._identity or stat.st_size < self._offset:  # a new file: from its start
            self._identity, self._offset, self._partial = identity, 0, b""
        if stat.st_size == self._offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # the part after the last newline is still being written
        found = []
        for line in lines:
            try:
                event = self.event_of(json.loads(line))
            except (ValueError, TypeError, KeyError):
                continue  # a line from a newer or older version: skipped, never fatal
            if event is not None:
                found.append(event)
        return found

    def event_of(self, record: dict):
        kind = KINDS.get(record.get("event"))
        if kind is None:
            return None
        if kind is events.SamplePredictions:
            return self._samples(record)
        fields = _fields(kind, record)
        if kind is events.FitStart:
            fields["classes"] = tuple(fields["classes"])
            fields["notes"] = tuple(fields.get("notes", ()))
            fields["history"] = tuple(events.EpochEnd(**row) for row in fields.get("history", ()))
            if fields.get("class_weights") is not None:
                fields["class_weights"] = tuple(fields["class_weights"])
        if kind is events.RunFinished:
            fields["skipped_images"] = tuple(events.ImageSkipped(**s) for s in fields.get("skipped_images", ()))
        return kind(**fields)

    def _samples(self, record: dict) -> events.SamplePredictions:
        from tl_studio.core.samples import make_thumbnail

        samples = []
        for s in record["samples"]:
            if s["path"] not in self._thumbnails:
                self._thumbnails[s["path"]] = make_thumbnail(s["path"])
            samples.append(events.SamplePrediction(
                thumbnail=self._thumbnails[s["path"]], path=s["path"], true_label=int(s["true_label"]),
                top_labels=tuple(s["top_labels"]), top_probs=tuple(s["top_probs"])))
        return events.SamplePredictions(int(record["epoch"]), tuple(record["classes"]), tuple(samples))


def earlier_batches(folder: RunFolder | Path, before_epoch: int) -> list:
    """The batch losses of a resumed run's finished epochs (those before ``before_epoch``), from its
    ``events.jsonl``, so the window's loss curve continues where the run stopped: FitStart's history
    carries only each epoch's figures. An epoch trained more than once (stopped part-way and resumed)
    counts with its last pass. Lines that do not parse are skipped, as ``poll`` skips them."""
    folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)
    found: dict[tuple[int, int], events.BatchEnd] = {}
    try:
        handle = open(folder.file(EVENTS), "rb")
    except OSError:
        return []
    with handle:
        for line in handle:
            if b'"BatchEnd"' not in line:  # other events are not parsed at all
                continue
            try:
                record = json.loads(line)
                if record.get("event") != "BatchEnd":
                    continue
                batch = events.BatchEnd(**_fields(events.BatchEnd, record))
            except (ValueError, TypeError, AttributeError):
                continue
            if batch.epoch < before_epoch:
                found[batch.epoch, batch.batch] = batch
    return [found[key] for key in sorted(found)]


def _fields(kind, record: dict) -> dict:
    """The keys of a log record that ``kind`` (an event dataclass) takes: a newer version's extra ones
    are left out."""
    names = {f.name for f in dataclasses.fields(kind)}
    return {key: value for key, value in record.items() if key in names}
