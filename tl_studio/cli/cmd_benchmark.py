"""``tl-studio benchmark RUN_DIR``: size, latency, throughput and accuracy of the run's model in every format."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tl_studio.core.export_formats import FORMAT_NAMES

    REPORT_FORMATS = (*FORMAT_NAMES, "onnx-int8")  # no numpy or torch import while the parser is built

    parser.add_argument("run_dir", help="a run folder written by `tl-studio train`")
    parser.add_argument("--formats", nargs="+", choices=REPORT_FORMATS, default=list(REPORT_FORMATS),
                        metavar="FORMAT", help=f"formats to measure (default: all of {', '.join(REPORT_FORMATS)})")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    from tl_studio.core.format_report import format_table, measure_formats

    def progress(message: str, step: int, steps: int) -> None:
        if step < steps:
            print(f"[{step + 1}/{steps}] {message}...", file=sys.stderr, flush=True)

    report = measure_formats(args.run_dir, args.formats, progress=progress)
    print(json.dumps(report.to_dict()) if args.json else format_table(report))
    return 0
