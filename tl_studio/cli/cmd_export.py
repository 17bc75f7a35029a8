"""``tl-studio export RUN_DIR --format pt2|onnx|torchscript|onnx-int8``: write a checked model file.

Every file's probabilities are calibrated on the run's validation split and carry the unknown rule
(``--keep``: the share of validation images it keeps). ``onnx-int8`` is quantised with ONNX Runtime and only
written when it agrees with the fp32 model on the validation split (core/quantize.py)."""

from __future__ import annotations

import argparse

from tl_studio.core.wording import megabytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tl_studio.core.export_formats import FORMAT_NAMES

    parser.add_argument("run_dir", help="a run folder written by `tl-studio train`")
    parser.add_argument("--format", choices=(*FORMAT_NAMES, "onnx-int8"), default=FORMAT_NAMES[0],
                        help=f"file format (default {FORMAT_NAMES[0]}: a PyTorch program; onnx for ONNX Runtime and "
                             "other runtimes; onnx-int8 3-4x smaller, checked against the full-precision model)")
    parser.add_argument("--out", help="file to write (default: RUN_DIR/model.pt2, .onnx, .ts or .int8.onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--keep", type=float, default=None, metavar="SHARE",
                        help="share of validation images the unknown answer keeps, at least 0.5 and below 1 "
                             "(default 0.95): a higher share answers more images, a lower one says 'unknown' more "
                             "often")


def run(args: argparse.Namespace) -> int:
    from tl_studio.core.errors import UserError

    try:
        from tl_studio.core.unknown import DEFAULT_KEEP, check_keep

        check_keep(DEFAULT_KEEP if args.keep is None else args.keep)
    except ValueError as error:
        raise UserError(f"--keep: {error}.") from None
    if args.format == "onnx-int8":
        return _int8(args)
    from tl_studio.core.runs import export_run

    report = export_run(args.run_dir, args.format, args.out, overwrite=args.overwrite, keep=args.keep)
    print(f"Wrote {report.path} ({args.format}, {megabytes(report.path.stat().st_size)}) "
          f"in {report.seconds:.1f} s.")
    print(report.check.describe())
    _describe_calibration(report.path)
    _note_a_run_still_training(args.run_dir)
    return 0


def _note_a_run_still_training(run_dir) -> None:
    """An export while the run trains is of its best epoch so far, which a later epoch may replace."""
    from tl_studio.core.run_folder import RunFolder

    if RunFolder(run_dir).is_locked():
        print("Note: the run is still training; this file is its best epoch so far: export again when it ends.")


def _int8(args: argparse.Namespace) -> int:
    import time

    from tl_studio.core.quantize import export_int8_run

    started = time.perf_counter()
    result = export_int8_run(args.run_dir, args.out, overwrite=args.overwrite, keep=args.keep)
    print(f"Wrote {result.path} (onnx-int8, {megabytes(result.int8_bytes)}, the full-precision file is "
          f"{megabytes(result.fp32_bytes)}) in {time.perf_counter() - started:.1f} s.")
    print(result.check.describe())
    # its temperature and rule were fitted on the full-precision model: 0.021 said, the int8 file's own 0.025
    _describe_calibration(result.path, of="the full-precision model")
    _note_a_run_still_training(args.run_dir)
    return 0


def _describe_calibration(path, of: str = "") -> None:
    from tl_studio.core.calibration import Calibration
    from tl_studio.core.model_file import load_model_file

    metadata = load_model_file(path, trust_torchscript=True).metadata  # the file this command just wrote
    if metadata.get("calibration"):
        said = Calibration.from_dict(metadata["calibration"]).describe()
        print(f"{said[:-1]} (of {of}; tl-studio evaluate measures this file's own)." if of else said)
    if metadata.get("unknown"):
        rule = metadata["unknown"]
        print(f"Unknown answer: below {rule['threshold']:.3f} confidence (keeps {rule['kept_on_val']:.1%} of the "
              f"validation images).")
