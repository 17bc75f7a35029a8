"""What the charts' axes and the data set's thumbnails show: fractions of an epoch read as such, and a
thumbnail shows the pixels training decodes (16-bit and transparent images included)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tl_studio.gui.plots import TrainingCurves
from tl_studio.gui.run_compare import RunCurves
from tl_studio.gui.thumbnails import decode_thumbnail


def _scale_after_range(plot, low: float, high: float) -> float:
    item = plot.getPlotItem()
    item.setXRange(low, high, padding=0)
    assert abs(item.getAxis("bottom").range[1] - high) < 1e-9  # the axis followed the view
    return item.getAxis("bottom").autoSIPrefixScale


def test_the_epoch_axis_reads_fractions_of_an_epoch_as_they_are(qtbot):
    # early in a fine-tuning run the curves span epochs 0.15-0.5: pyqtgraph's automatic SI prefix made
    # that "epoch (x0.001)" with ticks 150...500
    curves, compared = TrainingCurves(), RunCurves()
    for plot in (curves.loss_plot, curves.accuracy_plot, curves.lr_plot, compared.loss_plot, compared.accuracy_plot):
        qtbot.addWidget(plot)
        assert _scale_after_range(plot, 0.15, 0.5) == 1.0


def test_the_runs_curves_tick_whole_epochs_and_an_empty_run_shows_plain_axes(qtbot, tmp_path):
    from tl_studio.core.run_history import RunSummary

    compared = RunCurves()
    qtbot.addWidget(compared)
    axis = compared.loss_plot.getPlotItem().getAxis("bottom")
    ticks = [value for _, values in axis.tickValues(0.9, 3.1, 500) for value in values]
    assert ticks and all(value == round(value) for value in ticks) and 2.0 in ticks  # no "1.5": no such epoch
    (major, labelled), *_ = axis.tickValues(0.9, 61, 500)
    assert major >= 10 and all(value % 10 == 0 for value in labelled)  # 60 epochs: a label every 10 or 20
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n"
                                     "1,0.9,0.5,40.0,0.4,0.001,1.0\n2,0.5,0.8,30.0,0.6,0.001,1.0\n")
    summary = RunSummary(path=str(run), name="run", status="stopped")
    compared.show_runs([summary])
    compared.loss_plot.getPlotItem().getViewBox().updateAutoRange()  # as its next paint does
    assert compared.loss_plot.getPlotItem().viewRange()[1][1] > 30  # fitted to the run's losses
    (run / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n")
    compared.show_runs([summary])  # stopped before its first epoch ended: plain axes, not the last run's
    assert compared.loss_plot.getPlotItem().viewRange()[1] == [0, 1]
    assert compared.hint.text() == "No epoch has finished yet: the curves appear after the first one."
    (run / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n"
                                     "1,0.9,0.5,40.0,0.4,0.001,1.0\n")
    compared.show_runs([summary])  # its first epoch ended: the plots fit it again
    compared.loss_plot.getPlotItem().getViewBox().updateAutoRange()
    assert compared.loss_plot.getPlotItem().viewRange()[1][1] > 30


def test_a_runs_first_batch_is_framed_in_the_first_epoch_from_zero_then_the_curves_are_fitted(qtbot):
    from types import SimpleNamespace

    curves = TrainingCurves()
    for plot in (curves.loss_plot, curves.lr_plot):
        qtbot.addWidget(plot)
    batch = lambda number, lr: SimpleNamespace(epoch=1, batch=number, num_batches=8, loss=0.7, lr=lr)
    curves.add_batches([batch(1, 3e-4)])  # pyqtgraph alone: epochs -0.4 to 0.6, learning rate -0.4 to 0.4
    (x_low, x_high), (y_low, y_high) = curves.lr_plot.getPlotItem().viewRange()
    assert (x_low, x_high) == (0, 1) and y_low == 0 and abs(y_high - 6e-4) < 1e-12
    assert curves.loss_plot.getPlotItem().viewRange()[1] == [0, 1.4]
    # and the lone point is drawn: a line of one point was nothing on the framed plot
    assert all(curves.curves[name].opts["symbol"] == "o" for name in ("batch", "smooth", "lr"))
    curves.add_batches([batch(2, 4e-4)])
    assert all(curves.lr_plot.getPlotItem().getViewBox().autoRangeEnabled())  # fitted to the curve again
    assert all(curves.curves[name].opts["symbol"] is None for name in ("batch", "smooth", "lr"))  # lines again


def test_a_one_epoch_runs_training_figures_are_marked_beside_its_val_dot(qtbot, tmp_path):
    from tl_studio.core.run_history import RunSummary

    compared = RunCurves()
    qtbot.addWidget(compared)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds\n"
                                     "1,0.9,0.5,0.7,0.6,0.001,1.0\n")
    compared.show_runs([RunSummary(path=str(run), name="run", status="done")])
    for plot in (compared.loss_plot, compared.accuracy_plot):
        marks = [item.opts["symbol"] for item in plot.getPlotItem().listDataItems()]
        assert marks == ["o", "o"]  # val, and train: a dashed line of one point showed nothing


def test_the_learning_rate_axis_writes_rates_as_the_suggestion_does(qtbot):
    """pyqtgraph's log axis read "learning rate (x0.001)" with ticks 0.001 ... 1, then 10¹ and 10²."""
    import numpy as np

    from tl_studio.gui.lr_finder_dialog import _plot

    plot = _plot()
    qtbot.addWidget(plot)
    plot.plot(np.logspace(-7, 0.5, 50), np.linspace(1, 0.5, 50))
    plot.getPlotItem().getViewBox().updateAutoRange()
    axis = plot.getPlotItem().getAxis("bottom")
    axis.setRange(*plot.getPlotItem().viewRange()[0])
    assert axis.autoSIPrefixScale == 1.0 and "x0.001" not in axis.labelString()
    assert axis.tickStrings([-4.0, -3.0, 0.0, 1.0], axis.autoSIPrefixScale, 1.0) == ["1e-04", "1e-03", "1e+00", "1e+01"]


def test_a_thumbnail_shows_what_training_decodes(tmp_path):
    from tl_studio.core.images import load_rgb

    grey16 = tmp_path / "grey16.png"
    Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(grey16)
    clear_red = tmp_path / "clear_red.png"
    Image.new("RGBA", (40, 40), (255, 0, 0, 0)).save(clear_red)
    for path in (grey16, clear_red):
        width, height, data = decode_thumbnail(str(path), size=20)
        tile = np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
        expected = np.asarray(load_rgb(path).resize((width, height)))
        assert np.abs(tile.astype(int) - expected.astype(int)).max() <= 2, (path.name, tile[0, 0], expected[0, 0])
    assert decode_thumbnail(str(tmp_path / "missing.png")) is None


def test_cleared_curves_forget_the_last_runs_axes_and_fit_the_next_ones(qtbot):
    """A run that failed in its set-up left the plots on the previous run's epochs."""
    from types import SimpleNamespace

    curves = TrainingCurves()
    qtbot.addWidget(curves.loss_plot)
    curves.loss_plot.show()
    view = curves.loss_plot.getPlotItem().vb

    def epochs(*numbers):  # the view fits new points when the event loop next runs
        with qtbot.waitSignal(view.sigRangeChanged, timeout=5_000):
            for number in numbers:
                curves.add_epoch(SimpleNamespace(epoch=number, val_loss=1 / number, train_acc=0.5, val_acc=0.5))

    epochs(20, 40)
    assert view.viewRange()[0][0] > 15
    curves.clear()
    assert view.viewRange()[0] == [0.0, 1.0]
    epochs(1, 3)
    assert 0.5 < view.viewRange()[0][0] <= 1.0 and 3.0 <= view.viewRange()[0][1] < 4.0
