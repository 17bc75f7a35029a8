"""``tl-studio models``: every model, its cost and accuracy, and whether its weights work offline right now.

Reads the catalog's JSON cache, so once that cache exists this command never imports torch.
"""

from __future__ import annotations

import argparse
import json
import sys

from tl_studio.core.wording import megabytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--filter", metavar="TEXT", default="",
                        help="only models whose name or family contains TEXT (case-insensitive)")


def run(args: argparse.Namespace) -> int:
    from tl_studio.core import catalog

    text = args.filter.strip().lower()
    infos = [info for info in catalog.list_models() if text in info.name or text in info.family]
    infos.sort(key=catalog.display_order)  # as the window lists them
    rows = [dict(info.to_dict(), weights_status=catalog.weights_status(info)) for info in infos]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"No model matches '{args.filter}'.", file=sys.stderr)
        return 1
    print(format_table(rows, catalog.DEFAULT_MODEL))
    print()
    if any(row["name"] == catalog.DEFAULT_MODEL for row in rows):
        print("* default.")
    print(offline_sentence(sum(row["weights_status"] != "missing" for row in rows), len(rows),
                           catalog.hub_checkpoint_dir()))
    print(f"PARAMS: {catalog.PUBLISHED_PARAMETERS_NOTE}.")
    return 0


def offline_sentence(offline: int, listed: int, download_folder) -> str:
    if offline == listed:
        return "It works offline now." if listed == 1 else f"All {listed} work offline now."
    into = f"on first use into {download_folder}"
    if offline == 0:
        return (f"It downloads its weights {into}." if listed == 1 else
                f"None of these {listed} works offline yet: each downloads its weights {into}.")
    return f"{offline} of {listed} models work offline now; the others download their weights {into}."


def format_table(rows: list[dict], default_model: str) -> str:
    header = ("MODEL", "PARAMS", "ACC@1", "GFLOPS", "INPUT", "WEIGHTS")
    lines = [header] + [_cells(row, default_model) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    # Name and weights read left-aligned, numbers right-aligned.
    return "\n".join(
        "  ".join(cell.ljust(w) if i in (0, 5) else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        .rstrip() for line in lines)


def _cells(row: dict, default_model: str) -> tuple[str, ...]:
    return (
        row["name"] + (" *" if row["name"] == default_model else ""),
        f"{row['num_params'] / 1e6:.1f}M",
        "-" if row["acc1"] is None else f"{row['acc1']:.1f}",
        "-" if row["gflops"] is None else f"{row['gflops']:.2f}",
        str(row["crop_size"]),
        _weights_cell(row),
    )


def _weights_cell(row: dict) -> str:
    if row["weights_status"] != "missing":
        return row["weights_status"]
    if row["bundled"] or row["file_bytes"] is None:
        return "missing"
    return f"download {megabytes(row['file_bytes'])}"
