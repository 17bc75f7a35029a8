"""The app's state in one plain object with signals: the dataset, the training config, the current
run and model file, and the dataset's edit history. Pages read it and subscribe to it; none of them
owns it (no god-object window)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from tl_studio.core.config import TrainConfig
from tl_studio.gui.data_fixer import DataFixer
from tl_studio.gui.tasks import TaskRunner


class Session(QObject):
    datasetChanged = Signal(object)  # DatasetScan | None
    configChanged = Signal(object)  # TrainConfig
    trainingStateChanged = Signal(bool)  # True while a run is active
    modelFileChanged = Signal(object)  # Path | None: the trained model the Evaluate/Export steps use
    runDirChanged = Signal(object)  # Path | None
    statusMessage = Signal(str)  # what the app is doing: every sentence said
    said = Signal(str, str)  # the same sentence and the step it is about ("": the step shown), for the status line
    scanningChanged = Signal(object)  # str | None: the folder whose scan is running (Start waits for it)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.scan = None
        self.scanning: str | None = None  # a folder being scanned to replace ``scan``
        # the Data step's split boxes, changed and not applied: what they say, for Start to ask about ("")
        self.split_pending = ""
        self.config = TrainConfig()
        # the freeze depth two-phase fine-tuning replaced, given back when the schedule changes again
        self._freeze_before_two_phase: str | None = None
        self.training = False
        self.model_file: Path | None = None
        self.run_dir: Path | None = None
        self.trusted_model_files: set[Path] = set()  # TorchScript files the user confirmed (gui/model_trust.py)
        # Moves and excludes in the data set, from any step, with one undo history (gui/data_fixer.py).
        self.tasks = TaskRunner(self)
        self.fixer = DataFixer(self, self.tasks)

    def set_dataset(self, scan) -> None:
        self.scan = scan
        if scan is not None:  # its split settings (the Data step's boxes) are the run's, in config.json too
            self.update_config(data_dir=str(scan.root), val_fraction=scan.val_fraction,
                               test_fraction=scan.test_fraction, seed=scan.seed)
        self.datasetChanged.emit(scan)

    def set_scanning(self, folder: str | None) -> None:
        """A folder the user chose is being scanned (None: no scan running). Until it is done, ``scan``
        is still the previous data set, which a run must not start on by mistake."""
        if folder != self.scanning:
            self.scanning = folder
            self.scanningChanged.emit(folder)

    def update_config(self, **changes) -> None:
        new = self.config.replace(**changes)
        said = []  # one status line for all of it: a second sentence hid the first
        if "freeze" in changes:
            self._freeze_before_two_phase = None  # a depth the user chose is theirs to keep
        if new.schedule == "fine-tune" and new.freeze == "all":  # two phases need something to unfreeze
            if "freeze" in changes:  # the Model step froze the whole backbone: Start refused it in CLI words
                new = new.replace(schedule="onecycle")
                said.append("Only the new head trains now, so the schedule is One-cycle again (two-phase "
                            "fine-tuning needs layers to unfreeze).")
            else:
                new = new.replace(freeze="none")
                self._freeze_before_two_phase = "all"
                said.append("Two-phase fine-tuning: the head trains first, then the whole network (change the "
                            "freeze depth on the Model step).")
        elif new.schedule != "fine-tune" and self._freeze_before_two_phase and "schedule" in changes:
            # leaving two-phase fine-tuning gives back the frozen backbone it unfroze (the next run trained
            # all 3,373,570 parameters after a switch there and back)
            new = new.replace(freeze=self._freeze_before_two_phase)
            self._freeze_before_two_phase = None
            said.append("Only the new head trains again, as before two-phase fine-tuning.")
        old = self.config
        if old.lr is not None and new.lr == old.lr and (new.freeze == "all") != (old.freeze == "all"):
            # a rate set for the head alone (the finder's 1e-2, say) would fine-tune the backbone ten times too
            # fast, and one set for fine-tuning trains a head too slowly
            new = new.replace(lr=None)
            was = "the new head alone" if old.freeze == "all" else "fine-tuning the backbone"
            said.append(f"The learning rate is automatic again: {old.lr:g} was set for training {was}. Find "
                        "learning rate… on the Train step measures one for this setting.")
        if said:
            self.say(" ".join(said))
        if new != self.config:
            self.config = new
            self.configChanged.emit(new)

    def set_training(self, active: bool) -> None:
        if active != self.training:
            self.training = active
            self.trainingStateChanged.emit(active)

    def set_run(self, run_dir: Path | None, model_file: Path | None) -> None:
        self.run_dir = Path(run_dir) if run_dir else None
        self.model_file = Path(model_file) if model_file else None
        self.runDirChanged.emit(self.run_dir)
        self.modelFileChanged.emit(self.model_file)

    def say(self, message: str, step: str = "") -> None:
        """``step``: the step a sentence from work in the background is about (an epoch ends while the user
        looks at the Runs step); it waits on that step's status line instead of standing on the one shown."""
        self.statusMessage.emit(message)
        self.said.emit(message, step)

    def shutdown(self) -> None:
        """Cancels and joins the session's own background work (the rescan after a move)."""
        self.tasks.shutdown()
