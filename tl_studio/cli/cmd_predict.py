"""``tl-studio predict MODEL_FILE IMAGE_OR_FOLDER...``: classify images with a trained model file."""

from __future__ import annotations

import argparse
import csv
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_file", help="a model.pt2 (or .onnx / .ts) written by TL Studio")
    parser.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--top-k", type=int, default=3, help="how many labels to show per image (default 3)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    parser.add_argument("--csv", metavar="FILE", help="also write the predictions to a CSV file")


def run(args: argparse.Namespace) -> int:
    from tl_studio.core.export import load_model_file
    from tl_studio.core.predict import collect_image_paths, predict_paths

    model = load_model_file(args.model_file)
    paths = collect_image_paths(args.inputs)
    predictions = []
    for prediction in predict_paths(model.predict, model.classes, paths, top_k=args.top_k):
        predictions.append(prediction)
        _print(prediction, args.json)
    if args.csv:
        _write_csv(args.csv, predictions, args.top_k)
    failed = sum(not p.ok for p in predictions)
    if failed:
        print(f"{failed} of {len(predictions)} files could not be classified (see above).", file=sys.stderr)
    return 0 if len(predictions) > failed else 1


def _print(prediction, as_json: bool) -> None:
    if as_json:
        payload = {"path": prediction.path, "labels": list(prediction.labels), "probs": list(prediction.probs)}
        if prediction.error:
            payload["error"] = prediction.error
        print(json.dumps(payload), flush=True)
    elif prediction.ok:
        ranked = ", ".join(f"{label} {prob:.1%}" for label, prob in zip(prediction.labels, prediction.probs))
        print(f"{prediction.path}: {ranked}", flush=True)
    else:
        print(f"{prediction.path}: not classified: {prediction.error}", file=sys.stderr, flush=True)


def _write_csv(path: str, predictions: list, top_k: int) -> None:
    from pathlib import Path

    from tl_studio.core.fileio import atomic_path

    header = ["path"] + [f"{kind}{i}" for i in range(1, top_k + 1) for kind in ("label", "prob")] + ["error"]
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for p in predictions:
            cells = [v for label, prob in zip(p.labels, p.probs) for v in (label, f"{prob:.6f}")]
            cells += [""] * (2 * top_k - len(cells))
            writer.writerow([p.path, *cells, p.error or ""])
