"""``tl-studio predict MODEL_FILE IMAGE_OR_FOLDER...``: classify images with a trained model file.

Output contract (README, "Predicting from the command line"):

- default: one line per image, ``PATH: label 97.1%, label 2.9%``; an unreadable file goes to stderr.
- default: an image the model file's unknown rule rejects reads ``PATH: unknown (closest: label 41.0%)``.
- ``--json``: one JSON object per line and image, ``{"path": ..., "top": [{"label": ..., "prob": ...}, ...],
  "unknown": true|false}`` best first; a file that could not be classified is ``{"path": ..., "error": ...}``.
- ``--csv FILE``: ``path, label1, prob1, ..., labelK, probK, unknown, error``; text cells that a spreadsheet
  would run as a formula start with an apostrophe. An existing FILE is replaced only with ``--overwrite``.

Images are classified in batches (``--batch-size``, decoded by ``--workers`` loader processes; see
core/inference.py) and every line, JSON object and CSV row is written and flushed as its batch is done,
in input order: an interrupted run keeps what it did. On a terminal, stderr shows the images done, the
images per second and the time left (not with ``--json``, as in ``evaluate``).
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number of labels; give 1 or more (e.g. --top-k 3)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_file", help="a model.pt2 (or .onnx / .ts) written by TL Studio, or the run folder "
                        "that wrote its model.pt2")
    parser.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--top-k", type=positive_int, default=3, help="how many labels to show per image (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    parser.add_argument("--csv", metavar="FILE", help="also write the predictions to a CSV file")
    parser.add_argument("--overwrite", action="store_true", help="replace the --csv file if it exists")
    parser.add_argument("--trust", action="store_true",
                        help="allow a TorchScript file (.ts/.pt/.pth/.jit): TorchScript runs code when it is "
                             "loaded, so use this only for files you trust")
    add_batch_arguments(parser)


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """--batch-size and --workers, shared with ``evaluate``."""
    parser.add_argument("--batch-size", type=positive_count, default=32, metavar="N",
                        help="images per pass through the model (default 32); the answers are the same to float "
                             "rounding (a confidence may move in its sixth decimal)")
    parser.add_argument("--workers", type=non_negative_count, default=None, metavar="N",
                        help="processes that decode images beside the model (default: 1 on a machine with up "
                             "to 4 cores, else 2; 0 decodes in the main process)")


def positive_count(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number of images; give 1 or more (e.g. --batch-size 32)")
    return value


def non_negative_count(text: str) -> int:
    value = _count(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of processes; give 0 or more (e.g. --workers 1)")
    return value


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1


def run(args: argparse.Namespace) -> int:
    settle_for_batches()  # before torch is imported
    from pathlib import Path

    from tl_studio.cli.progress import progress_for
    from tl_studio.core.errors import UserError
    from tl_studio.core.fileio import check_writable_file
    from tl_studio.core.inference import plan_for
    from tl_studio.core.model_file import for_many_images
    from tl_studio.core.predict import collect_image_paths, predict_paths, unknown_rule_of

    paths = collect_image_paths(args.inputs)
    if not paths:  # else nothing at all would be printed, and the command would end with status 1
        raise UserError(f"No files in {', '.join(args.inputs)} (hidden and system files are skipped); give image "
                        "files, or folders that hold them.")
    if args.csv:  # before the work, not after minutes of it
        check_writable_file(Path(args.csv))
        _refuse_a_table_over_what_is_read(Path(args.csv), Path(args.model_file), paths)
        if Path(args.csv).expanduser().exists() and not args.overwrite:  # it may hold the last run's answers
            raise UserError(f"{args.csv} already exists; choose another --csv file or add --overwrite.")
    model = for_many_images(load_model_argument(args.model_file, args.trust, args.inputs, "predict"), len(paths))
    plan = plan_for(model, args.batch_size)
    explain_plan(plan, args.batch_size)
    progress = progress_for("Classifying", len(paths), enabled=not args.json)
    done = failed = 0
    top_k = min(args.top_k, len(model.classes) or args.top_k)  # a 2-class model has no 3rd label column
    with _CsvRows(args.csv, top_k) as rows:
        for prediction in predict_paths(model.predict, model.classes, paths, top_k=top_k,
                                        unknown_rule=unknown_rule_of(model.metadata), plan=plan,
                                        workers=worker_count(args)):
            if progress:
                progress.clear()
            _print(prediction, args.json)
            rows.write(prediction)
            done += 1
            failed += not prediction.ok
            if progress:
                progress.update(done)
    if progress:
        progress.finish()
    if failed and done > 1:  # one file: the line above said it
        print(f"{failed} of {done} files could not be classified (see above).", file=sys.stderr)
    advise_on_shared_memory()
    return 0 if done > failed else 1


def _refuse_a_table_over_what_is_read(table, model_file, paths) -> None:
    """--csv naming a file the command reads: with --overwrite, a photo to classify, the model file or
    the run's metrics.csv became the table, and the photo was then "not an image file"."""
    from tl_studio.core.errors import UserError

    target = table.expanduser().resolve()
    model = model_file.expanduser().resolve()
    if target == model:
        raise UserError(f"--csv {table} is the model file; choose another file for the table.")
    if model.is_dir() and target.parent == model and target.exists():
        raise UserError(f"--csv {table} is a file of the run {model_file}; choose another file for the table.")
    if any(target == path.resolve() for path in paths):
        raise UserError(f"--csv {table} is one of the images to classify; choose another file for the table.")


def load_model_argument(model_argument: str, trust: bool, others: list[str], command: str):
    """The checked model file; given a folder of images first and a model after it, says to swap them
    (it said only "a folder without a model file", leaving the user to spot the order)."""
    from pathlib import Path

    from tl_studio.core.errors import UserError
    from tl_studio.core.model_file import load_model_file

    try:
        return load_model_file(model_argument, trust_torchscript=trust)
    except UserError:
        model = next((other for other in others if _names_a_model(Path(other))), None)
        given = Path(model_argument)
        if model is None or not (given.is_dir() or given.is_file()) or _names_a_model(given):
            raise
        rest = " ".join(shlex.quote(other) for other in [model_argument, *others] if other != model)
        what = "a folder of images" if given.is_dir() else "not a model file"  # a photo given first, say
        raise UserError(f"{model_argument} is {what} and {model} a model: the model comes first "
                        f"(tl-studio {command} {shlex.quote(model)} {rest}).") from None


def _names_a_model(path) -> bool:
    from tl_studio.core.export_formats import EXPORT_FORMATS
    from tl_studio.core.run_folder import BEST_CHECKPOINT, MODEL_FILE

    if path.is_dir():
        return (path / MODEL_FILE).is_file() or (path / BEST_CHECKPOINT).is_file()
    return path.is_file() and any(fmt.opens(path) for fmt in EXPORT_FORMATS.values())


def advise_on_shared_memory() -> None:
    """One line on stderr when loader processes' batches did not fit in shared memory (core/dataset.py)."""
    from tl_studio.core.dataset import SHARED_MEMORY_ADVICE, batches_through_pipe

    if batches_through_pipe():
        print(SHARED_MEMORY_ADVICE, file=sys.stderr)


def settle_for_batches() -> None:
    """This process's OpenMP threads sleep when idle (core/cpu_settings.py; keeping freed memory for the
    next batch is every command's, cli/main.py). First thing in a command: OpenMP reads its setting when
    torch loads."""
    from tl_studio.core.cpu_settings import let_waiting_threads_sleep

    let_waiting_threads_sleep()


def explain_plan(plan, batch_size: int, verb: str = "Classifying") -> None:
    """One line on stderr when a model file cannot take the batches asked for."""
    from tl_studio.core.safe_text import for_terminal

    if batch_size > 1 and not plan.batched:
        print(f"{verb} one image at a time: {for_terminal(plan.note)}.", file=sys.stderr)


def worker_count(args: argparse.Namespace) -> int:
    from tl_studio.core.inference import default_workers

    return default_workers() if args.workers is None else args.workers


def json_record(prediction) -> dict:
    """The object ``--json`` prints for one image."""
    from tl_studio.core.safe_text import readable

    if not prediction.ok:
        return {"path": readable(prediction.path), "error": prediction.error}
    return {"path": readable(prediction.path),
            "top": [{"label": label, "prob": prob} for label, prob in zip(prediction.labels, prediction.probs)],
            "unknown": prediction.unknown}


def _print(prediction, as_json: bool) -> None:
    from tl_studio.core.safe_text import for_terminal

    if as_json:  # json.dumps escapes control characters itself
        print(json.dumps(json_record(prediction)), flush=True)
    elif prediction.ok and prediction.unknown:
        print(f"{for_terminal(prediction.path)}: unknown (closest: {for_terminal(prediction.labels[0])} "
              f"{prediction.probs[0]:.1%})", flush=True)
    elif prediction.ok:
        ranked = ", ".join(f"{for_terminal(label)} {prob:.1%}" for label, prob in zip(prediction.labels, prediction.probs))
        print(f"{for_terminal(prediction.path)}: {ranked}", flush=True)
    else:
        print(f"{for_terminal(prediction.path)}: not classified: {for_terminal(prediction.error)}",
              file=sys.stderr, flush=True)


class _CsvRows:
    """The --csv file, a row written and flushed per prediction (nothing without --csv)."""

    def __init__(self, path: str | None, top_k: int):
        self.path = path
        self.top_k = top_k
        self.handle = None
        self.writer = None

    def __enter__(self) -> "_CsvRows":
        from tl_studio.core.predict import CSV_LINE_END, csv_header

        if self.path:
            try:
                self.handle = open(self.path, "w", newline="", encoding="utf-8")
                self.writer = csv.writer(self.handle, lineterminator=CSV_LINE_END)
                self.writer.writerow(csv_header(self.top_k))
                self.handle.flush()
            except OSError as error:
                self._failed(error)
        return self

    def write(self, p) -> None:
        from tl_studio.core.predict import csv_cells

        if self.writer is None:
            return
        try:
            self.writer.writerow(csv_cells(p.path, p.labels, p.probs, p.unknown, p.error, self.top_k))
            self.handle.flush()
        except OSError as error:  # a full disk mid-run: the rows written so far stay in the file
            self._failed(error)

    def _failed(self, error: OSError):
        from tl_studio.core.errors import UserError

        self.writer = None
        raise UserError(f"Could not write {self.path} ({error.strerror or error}); the rows written before are "
                        "kept: free some space or choose another --csv file, then run again.") from None

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            try:
                self.handle.close()
            except OSError:  # its last bytes did not fit either: said already
                pass
