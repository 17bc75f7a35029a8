"""One sentence that tells a training run's user what the dataset scan found wrong, so that files left
out of the run or an image with two labels are never passed over in silence (the scan itself, and the
Data step's Problems tab, give each problem's reason)."""

from __future__ import annotations

from collections.abc import Sequence

# What each kind of problem means for the run, with the number of them: (one, several). The kinds of
# a file that is not a usable image (core/images.py) and of an image outside any class folder all mean
# the same thing here: the run does not see that file.
_LEFT_OUT = ("file left out of the run", "files left out of the run")
_GROUPS = {
    "duplicate": ("duplicate image with another label or in another split",
                  "duplicate images with another label or in another split"),
    "small_class": ("class with only one image", "classes with only one image"),
    "empty_class": ("class folder with no usable image", "class folders with no usable image"),
    "missing_split": ("class missing from a split folder", "classes missing from a split folder"),
    "bad_class_name": ("folder ignored for its name", "folders ignored for their names"),
    "ignored_folder": ("folder ignored (not train, val or test)", "folders ignored (not train, val or test)"),
}
EXAMPLES = 3  # paths named per group; the scan lists them all


def problems_sentence(problems: Sequence) -> str | None:
    """``problems``: the scan's (path, reason, kind) records. None when there are none."""
    if not problems:
        return None
    groups: dict[tuple[str, str], list[str]] = {}
    for problem in problems:
        groups.setdefault(_GROUPS.get(problem.kind, _LEFT_OUT), []).append(problem.path)
    order = [_LEFT_OUT, *_GROUPS.values()]
    parts = [_part(names, paths) for names in order if (paths := groups.get(names))]
    count = len(problems)
    return (f"The dataset scan found {count} problem{'s' if count != 1 else ''}: {'; '.join(parts)}. "
            "`tl-studio scan` or the Data step's Problems tab gives the reason for each.")


def _part(names: tuple[str, str], paths: list[str]) -> str:
    shown = ", ".join(paths[:EXAMPLES])
    more = f" and {len(paths) - EXAMPLES} more" if len(paths) > EXAMPLES else ""
    return f"{len(paths)} {names[0] if len(paths) == 1 else names[1]} ({shown}{more})"
