"""``tl-studio evaluate MODEL_FILE DATA_DIR``: accuracy, per-class metrics and the confusion matrix of a
trained model file on a folder of labelled images.

DATA_DIR is scanned with the split settings the model was trained with, so ``--split val`` is the very
validation split it was trained against. The val split is the default (as on the Evaluate step), for a
pre-split folder (train/ and val/) and a plain folder of classes alike; a folder too small to have one is
evaluated on every image. The report and ``--json`` say which split was used. Classes are matched to the
model's by name. Images go through the model in batches (``--batch-size``, ``--workers``; as ``predict``),
with the same figures as one at a time.
"""

from __future__ import annotations

import argparse
import json
import sys

from tl_studio.cli.cmd_predict import add_batch_arguments

SPLITS = ("val", "test", "train", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_file", help="a model.pt2 (or .onnx / .ts) written by TL Studio, or the run folder "
                        "that wrote its model.pt2")
    parser.add_argument("data_dir", help="a folder with one sub-folder per class, or train/ and val/ folders")
    parser.add_argument("--split", choices=SPLITS, default=None,
                        help="which images: val (the default: the split the model was validated on), test, "
                             "train, or all")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.add_argument("--ood", metavar="DIR",
                        help="also measure the unknown answer on a folder of images the model should not know: "
                             "the share rejected, the share of known images kept, and the AUROC")
    parser.add_argument("--trust", action="store_true",
                        help="allow a TorchScript file (.ts/.pt/.pth/.jit): TorchScript runs code when it is "
                             "loaded, so use this only for files you trust")
    add_batch_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tl_studio.cli.cmd_predict import (advise_on_shared_memory, explain_plan, load_model_argument,
                                           settle_for_batches, worker_count)

    settle_for_batches()  # before torch is imported
    from tl_studio.cli.progress import progress_for
    from tl_studio.core.evaluation import (default_choice, evaluate, evaluation_set, format_report, problems_of_split,
                                           scan_for_model)
    from tl_studio.core.inference import plan_for
    from tl_studio.core.model_file import for_many_images
    from tl_studio.core.problem_summary import problems_sentence
    from tl_studio.core.safe_text import for_terminal

    # its class names are checked there
    model = load_model_argument(args.model_file, args.trust, [args.data_dir], "evaluate")
    scan = scan_for_model(args.data_dir, model.metadata)
    split, why = (args.split, "") if args.split else default_choice(scan, model.metadata)
    chosen = evaluation_set(scan, split, model.classes)
    if problems := problems_sentence(problems_of_split(scan, split), left_out_of="the evaluation"):
        print(for_terminal(problems), file=sys.stderr)
    if chosen.unknown:
        print(for_terminal(chosen.describe_unknown()), file=sys.stderr)
    model = for_many_images(model, len(chosen.paths))
    plan = plan_for(model, args.batch_size)
    explain_plan(plan, args.batch_size, "Evaluating")
    line = progress_for("Evaluating", len(chosen.paths), enabled=not args.json)
    result = evaluate(model.predict, chosen, progress=line and (lambda done, total: line.update(done)),
                      model_path=str(args.model_file), plan=plan, workers=worker_count(args), metadata=model.metadata)
    if line:
        line.finish()
    for path, reason in result.failed:
        print(f"{for_terminal(path)}: not evaluated: {for_terminal(reason)}", file=sys.stderr)
    if not result.paths:
        print("No image could be evaluated.", file=sys.stderr)
        return 1
    ood = _unknown_figures(model, result, args.ood, plan, worker_count(args)) if args.ood else None
    advise_on_shared_memory()  # after both passes over images
    if args.json:
        payload = result.to_dict()
        if ood is not None:
            payload["ood"] = ood.to_dict()
        print(json.dumps(payload))
    else:
        print(for_terminal_lines(format_report(result)))
        print(f"Expected calibration error {result.ece:.3f} (15 bins).")
        if ood is not None:
            print(ood.describe())
        if args.split is None:
            print(f"(By default {why}; --split chooses val, test, train or all.)")
    return 0


def _unknown_figures(model, known, ood_dir: str, plan, workers: int):
    """The model file's unknown rule on --ood; a file written before it had one gets the rule a new export
    would choose (95 % of these known images kept), and says so."""
    from tl_studio.core.evaluation import evaluate_unknown, unknown_rule_to_check
    from tl_studio.core.predict import collect_image_paths

    rule, note = unknown_rule_to_check(model.metadata, known)
    if note:
        print(note, file=sys.stderr)
    return evaluate_unknown(model.predict, collect_image_paths([ood_dir]), known, rule, plan=plan, workers=workers)


def for_terminal_lines(text: str) -> str:
    from tl_studio.core.safe_text import for_terminal

    return "\n".join(for_terminal(line) for line in text.split("\n"))
