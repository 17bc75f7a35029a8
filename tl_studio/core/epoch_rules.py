"""Built-in callbacks that judge finished epochs: which one is the best so far, and whether to stop
early. Both keep their state in the checkpoint, so a resumed run judges as the uninterrupted one would."""

from __future__ import annotations

import math

from tl_studio.core import events
from tl_studio.core.callbacks import Callback
from tl_studio.core.wording import counted


class BestEpoch(Callback):
    """The best epoch: highest val accuracy, ties broken by lower val loss. The loop asks ``judge()``
    before it builds the epoch's event (whose ``is_best`` it sets)."""

    name = "best_epoch"

    def __init__(self):
        self.epoch: int | None = None
        self.val_acc: float | None = None
        self.val_loss = math.inf

    def judge(self, epoch: int, val_acc: float, val_loss: float) -> bool:
        improved = self.val_acc is None or val_acc > self.val_acc or (
            val_acc == self.val_acc and val_loss < self.val_loss)
        if improved:
            self.epoch, self.val_acc, self.val_loss = epoch, val_acc, val_loss
        return improved

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "val_acc": self.val_acc, "val_loss": self.val_loss}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.val_acc, self.val_loss = state["epoch"], state["val_acc"], state["val_loss"]


class EarlyStopping(Callback):
    """Stops the run once val loss has not improved for ``patience`` epochs (0: never), saying what to
    change for the next run."""

    name = "early_stopping"
    MIN_IMPROVEMENT = 1e-4

    def __init__(self, patience: int):
        self.patience = patience
        self.lowest_val_loss = math.inf
        self.epochs_without_improvement = 0

    def after_epoch(self, trainer, event: events.EpochEnd) -> None:
        if event.val_loss < self.lowest_val_loss - self.MIN_IMPROVEMENT:
            self.lowest_val_loss, self.epochs_without_improvement = event.val_loss, 0
        else:
            self.epochs_without_improvement += 1
        if self.patience and self.epochs_without_improvement >= self.patience:
            # said by the engine after the epoch's own line, which it explains
            trainer.stop_early = (f"Stopped early: val loss has not improved for {counted(self.patience, 'epoch')} "
                                  f"(best at epoch {trainer.best.epoch}). " + _next_time(trainer))

    def state_dict(self) -> dict:
        return {"lowest_val_loss": self.lowest_val_loss, "epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, state: dict) -> None:
        self.lowest_val_loss = state["lowest_val_loss"]
        self.epochs_without_improvement = state["epochs_without_improvement"]


def _next_time(trainer) -> str:
    """The same advice as the overfitting hint and the advisor: what to change for the next run."""
    from tl_studio.core.advice_rules import overfitting_remedies, remedies_sentence
    from tl_studio.core.models import model_stages

    config, state = trainer.config, trainer.state
    best = min(state.history, key=lambda e: e.val_loss).epoch
    return remedies_sentence(overfitting_remedies(config.freeze, config.augment, best,
                                                  len(model_stages(state.model)), config.feature_cache,
                                                  pretrained=config.pretrained))
