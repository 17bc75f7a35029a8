"""The Evaluate step's summary over its figures: accuracy, macro-F1, the images evaluated, and what was
left out (unreadable files, classes the model does not know, the scan's problem files)."""

from __future__ import annotations

from html import escape
from pathlib import Path

from tl_studio.core.wording import counted

REASONS_SHOWN = 5  # problem files of another folder listed with their reasons under the figures


def evaluation_summary(evaluation, scan, on_the_data_step: bool) -> str:
    """Rich text; the names in it are the user's (files, class folders), so they are escaped. A folder
    evaluated from Images: Another folder… is not the one the Data step shows (its Problems tab)."""
    from tl_studio.core.evaluation import problems_of_split
    from tl_studio.core.problem_summary import problems_sentence

    note = f" {escape(left_out)}" if (left_out := evaluation.macro_f1_note()) else ""
    parts = [f"<b>Accuracy {evaluation.accuracy:.1%}</b> · macro-F1 {evaluation.macro_f1:.3f}{note} · "
             f"{counted(len(evaluation.paths), 'image')} ({escape(evaluation.source)})"]
    if note := evaluation.training_note():  # the figures above would be read as the model's on new images
        parts.append(f"<b>{escape(note)}</b>" if evaluation.seen_in_training else escape(note))
    if evaluation.failed:
        names = ", ".join(Path(path).name for path, _ in evaluation.failed[:5])
        parts.append(escape(f"{counted(len(evaluation.failed), 'file')} could not be read and were left out: {names}"
                            + (" …" if len(evaluation.failed) > 5 else "")))
    if evaluation.unknown:
        names = ", ".join(f"{name} ({count})" for name, count in sorted(evaluation.unknown.items()))
        parts.append(escape(f"Skipped images of classes the model does not know: {names}"))
    # A folder the Data step does not show: its files' reasons here, not a command to type in a terminal
    own_list = not on_the_data_step and scan is not None
    reasons_in = "" if own_list else "The Data step's Problems tab"
    problems = problems_of_split(scan, evaluation.split) if scan else ()
    if sentence := problems_sentence(problems, "the evaluation", reasons_in):
        parts.append(escape(sentence))
        if own_list:
            parts += [escape(f"{problem.path}: {problem.reason}") for problem in problems[:REASONS_SHOWN]]
            if len(problems) > REASONS_SHOWN:
                parts.append(escape(f"… and {len(problems) - REASONS_SHOWN} more."))
    return "<br>".join(parts)
