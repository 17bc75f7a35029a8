"""``tl-studio predict MODEL_FILE IMAGE_OR_FOLDER...``: classify images with a trained model file.

Output contract (README, "Predicting from the command line"):

- default: one line per image, ``PATH: label 97.1%, label 2.9%``; an unreadable file goes to stderr.
- default: an image the model file's unknown rule rejects reads ``PATH: unknown (closest: label 41.0%)``.
- ``--json``: one JSON object per line and image, ``{"path": ..., "top": [{"label": ..., "prob": ...}, ...],
  "unknown": true|false}`` best first; a file that could not be classified is ``{"path": ..., "error": ...}``.
- ``--csv FILE``: ``path, label1, prob1, ..., labelK, probK, unknown, error``; text cells that a spreadsheet
  would run as a formula start with an apostrophe.
"""

from __future__ import annotations

import argparse
import csv
import json
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
    parser.add_argument("model_file", help="a model.pt2 (or .onnx / .ts) written by TL Studio")
    parser.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--top-k", type=positive_int, default=3, help="how many labels to show per image (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    parser.add_argument("--csv", metavar="FILE", help="also write the predictions to a CSV file")
    parser.add_argument("--trust", action="store_true",
                        help="allow a TorchScript file (.ts/.pt/.pth/.jit): TorchScript runs code when it is "
                             "loaded, so use this only for files you trust")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tl_studio.core.fileio import check_writable_file
    from tl_studio.core.model_file import load_model_file
    from tl_studio.core.predict import collect_image_paths, predict_paths, unknown_rule_of

    if args.csv:  # before the work, not after minutes of it
        check_writable_file(Path(args.csv))
    model = load_model_file(args.model_file, trust_torchscript=args.trust)
    paths = collect_image_paths(args.inputs)
    predictions = []
    for prediction in predict_paths(model.predict, model.classes, paths, top_k=args.top_k,
                                    unknown_rule=unknown_rule_of(model.metadata)):
        predictions.append(prediction)
        _print(prediction, args.json)
    if args.csv:
        _write_csv(args.csv, predictions, args.top_k)
    failed = sum(not p.ok for p in predictions)
    if failed:
        print(f"{failed} of {len(predictions)} files could not be classified (see above).", file=sys.stderr)
    return 0 if len(predictions) > failed else 1


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


def _write_csv(path: str, predictions: list, top_k: int) -> None:
    from pathlib import Path

    from tl_studio.core.fileio import atomic_path
    from tl_studio.core.safe_text import csv_row

    header = ["path"] + [f"{kind}{i}" for i in range(1, top_k + 1) for kind in ("label", "prob")] + ["unknown", "error"]
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for p in predictions:
            cells = [v for label, prob in zip(p.labels, p.probs) for v in (csv_row([label])[0], f"{prob:.6f}")]
            cells += [""] * (2 * top_k - len(cells))
            unknown = "" if not p.ok else ("yes" if p.unknown else "no")
            writer.writerow([*csv_row([p.path]), *cells, unknown, *csv_row([p.error or ""])])
