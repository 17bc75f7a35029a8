"""``tl-studio export RUN_DIR --format pt2|onnx|torchscript``: write a checked model file."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run folder written by `tl-studio train`")
    from tl_studio.core.export_formats import FORMAT_NAMES

    parser.add_argument("--format", choices=FORMAT_NAMES, default=FORMAT_NAMES[0])
    parser.add_argument("--out", help="file to write (default: RUN_DIR/model.pt2, .onnx or .ts)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    from tl_studio.core.runs import export_run

    report = export_run(args.run_dir, args.format, args.out, overwrite=args.overwrite)
    print(f"Wrote {report.path} ({args.format}, {report.path.stat().st_size / 2**20:.1f} MB) "
          f"in {report.seconds:.1f} s.")
    print(report.check.describe())
    return 0
