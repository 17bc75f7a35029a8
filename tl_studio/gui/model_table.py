"""The model zoo as a sortable, filterable table: name, parameters, ImageNet accuracy, input size,
relative speed and where the weights are."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, QSize, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QStyle, QStyleOptionHeader, QTableView

from tl_studio.core.catalog import PUBLISHED_PARAMETERS_NOTE, display_order
from tl_studio.core.natural_order import natural_key
from tl_studio.core.wording import megabytes

# Short headers and cells, each said in full in its tooltip: at the window's smallest size (1000 px) the
# table beside the details is about 420 px wide, and with "Parameters", "ImageNet top-1" and "download
# 2581 MB" only the first two columns were in view; Weights, which says whether a model works offline,
# needed scrolling sideways. "ImageNet top-1" keeps its words on two lines.
COLUMNS = ("Model", "Params", "ImageNet\ntop-1", "Input", "Cost", "Weights")
WEIGHTS_TEXT = {"bundled": "bundled", "cached": "downloaded"}
WEIGHTS_TIPS = {"bundled": "Bundled with TL Studio: works offline",
                "cached": "Downloaded: in the torch hub cache, works offline"}
HEADER_TIPS = {
    0: "The torchvision model (efficientnet_lite0 is bundled with TL Studio)",
    1: "Parameters, in millions: " + PUBLISHED_PARAMETERS_NOTE + ".",
    2: "ImageNet top-1 accuracy of the pretrained weights, as torchvision publishes it",
    3: "The image size the weights were trained at (pixels, square)",
    4: "Compute per image relative to efficientnet_lite0 (from GFLOPS): a rough guide to training and prediction "
       "time",
    5: "Where the ImageNet weights are: bundled or downloaded (both work offline), or the size still to "
       "download (\N{DOWNWARDS ARROW})",
}


class ModelTableModel(QAbstractTableModel):
    SortRole = Qt.UserRole + 1

    def __init__(self, parent=None):
        super().__init__(parent)
        self.models: list = []
        self.status: dict[str, str] = {}
        self.reference_gflops = 1.0
        self.name_rank: dict[str, int] = {}

    def set_models(self, models: list, status: dict[str, str]) -> None:
        self.beginResetModel()
        self.models = sorted(models, key=display_order)  # the order shown while no column is sorted
        # sorting by the Model column compares these ranks: the proxy compares plain numbers in C++,
        # where a Python key would not compare at all
        self.name_rank = {name: rank for rank, name in enumerate(sorted((m.name for m in self.models),
                                                                          key=natural_key))}
        self.status = dict(status)
        reference = next((m for m in self.models if m.bundled and m.gflops), None)
        self.reference_gflops = reference.gflops if reference else 1.0
        self.endResetModel()

    def set_status(self, name: str, status: str) -> None:
        self.status[name] = status
        for row, info in enumerate(self.models):
            if info.name == name:
                self.dataChanged.emit(self.index(row, 5), self.index(row, 5))

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.models)

    def columnCount(self, parent=QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if orientation == Qt.Horizontal and role == Qt.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Horizontal and role == Qt.ToolTipRole:
            return HEADER_TIPS.get(section)
        return None

    def data(self, index: QModelIndex, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        info = self.models[index.row()]
        column = index.column()
        if role == Qt.DisplayRole:
            return self._text(info, column)
        if role == self.SortRole:
            return self._sort_key(info, column)
        if role == Qt.TextAlignmentRole and column in (1, 2, 3, 4):
            return int(Qt.AlignRight | Qt.AlignVCenter)
        if role == Qt.ToolTipRole and column == 5:
            return self._weights_tip(info)
        if role == Qt.ToolTipRole:
            return f"{info.name}: {info.family}, weights {info.weights_name or 'bundled'}"
        return None

    def _text(self, info, column: int) -> str:
        if column == 0:
            return info.name
        if column == 1:
            return f"{info.num_params / 1e6:.1f} M"
        if column == 2:
            return f"{info.acc1:.1f} %" if info.acc1 is not None else "—"
        if column == 3:
            return f"{info.crop_size} px"
        if column == 4:
            if not info.gflops:
                return "—"
            relative = info.gflops / self.reference_gflops
            return f"{relative:.0f}x" if relative >= 100 else f"{relative:.1f}x"  # 2641x: a tenth says nothing
        status = self.status.get(info.name, "missing")
        if status == "missing":
            return f"\N{DOWNWARDS ARROW} {megabytes(info.file_bytes, 0)}" if info.file_bytes else "download"
        return WEIGHTS_TEXT.get(status, status)

    def _weights_tip(self, info) -> str:
        status = self.status.get(info.name, "missing")
        size = f" ({megabytes(info.file_bytes, 0)})" if info.file_bytes else ""
        return WEIGHTS_TIPS.get(status, f"Not downloaded yet{size}: download it on this step before training "
                                        "offline")

    def _sort_key(self, info, column: int):
        keys = (self.name_rank[info.name], info.num_params, info.acc1 or 0.0, info.crop_size, info.gflops or 0.0,
                self.status.get(info.name, "missing"))
        return keys[column]

    def row_of(self, name: str) -> int:
        return next((row for row, info in enumerate(self.models) if info.name == name), -1)


class ModelFilter(QSortFilterProxyModel):
    """Filters on every word of the filter text (name or family), sorts numbers as numbers."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSortRole(ModelTableModel.SortRole)
        self.words: list[str] = []

    def set_text(self, text: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9; invalidateFilter() is deprecated there
            self.beginFilterChange()
            self.words = text.lower().split()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.words = text.lower().split()
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:
        info = self.sourceModel().models[row]
        haystack = f"{info.name} {info.family}".lower()
        return all(word in haystack for word in self.words)


class SortedColumnHeader(QHeaderView):
    """Room for the sort arrow in the sorted column only. QHeaderView asks the style for every section's
    size as if each were sorted, which adds about 30 px to each of the six: the figures' columns were
    twice as wide as their numbers and pushed Weights out of view. The sorted column still gets the room
    (Qt resizes contents-sized sections when the sort column changes)."""

    def __init__(self, parent=None):
        super().__init__(Qt.Horizontal, parent)
        self.setSectionsClickable(True)  # as QTableView's own header: a click sorts
        self.setHighlightSections(True)

    def sectionSizeFromContents(self, logical: int) -> QSize:
        if not self.isSortIndicatorShown() or logical == self.sortIndicatorSection() or self.model() is None:
            return super().sectionSizeFromContents(logical)
        option = QStyleOptionHeader()
        self.initStyleOption(option)
        option.section = logical
        option.text = str(self.model().headerData(logical, Qt.Horizontal, Qt.DisplayRole) or "")
        option.sortIndicator = QStyleOptionHeader.SortIndicator.None_
        font = self.font()
        font.setBold(True)  # as Qt sizes them: a highlighted section (the chosen row's) is drawn bold
        option.fontMetrics = QFontMetrics(font)
        return self.style().sizeFromContents(QStyle.CT_HeaderSection, option, QSize(), self)


def model_table_view(proxy: ModelFilter) -> QTableView:
    view = QTableView()
    view.setHorizontalHeader(SortedColumnHeader(view))
    view.setObjectName("modelTable")
    view.setModel(proxy)
    view.setSelectionBehavior(QAbstractItemView.SelectRows)
    view.setSelectionMode(QAbstractItemView.SingleSelection)
    view.setSortingEnabled(True)
    view.sortByColumn(-1, Qt.AscendingOrder)  # the model's own order: the default model first, then by name
    view.verticalHeader().hide()
    view.setEditTriggers(QAbstractItemView.NoEditTriggers)
    # the figures take the width they need; the model name, what people read first, gets the rest
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    view.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
    view.setTextElideMode(Qt.ElideMiddle)  # squeezed further, a name keeps its family and its variant
    view.setAlternatingRowColors(True)
    return view
