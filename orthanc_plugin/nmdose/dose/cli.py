"""``nmdose dose parse FILE... [--json]``: the offline dose parser, the contract other tools use.

Exit status: 0 when every file parsed (``ok``) or holds no dose (``not_dose``); 1 when any file is ``error``.
Files are processed one by one and printed as they are parsed; a bad file never stops the run.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nmdose.dose.parse import parse_file


def register(subparsers: Any) -> None:
    """Add ``dose`` and its sub-commands to the ``nmdose`` parser."""
    dose = subparsers.add_parser(
        "dose", help="radiation-dose extraction (CT RDSR, radiopharmaceutical, PET/NM)"
    )
    dose_sub = dose.add_subparsers(dest="dose_command", metavar="DOSE_COMMAND")
    parse = dose_sub.add_parser(
        "parse",
        help="parse dose objects offline and print what was found",
        description=__doc__.splitlines()[0],
        epilog="Exit status: 0 if every file is ok or not_dose, 1 if any file is error.",
    )
    parse.add_argument("files", nargs="+", metavar="FILE", help="DICOM files")
    parse.add_argument("--json", action="store_true", help="one JSON object per file (JSON Lines)")
    parse.set_defaults(func=parse_handler)
    dose.set_defaults(func=lambda args, ctx: (dose.print_help(), 2)[1])


def parse_handler(args: argparse.Namespace, ctx: Any) -> int:
    """Parse each file, stream the results, return 1 if any failed."""
    failed = 0
    out = sys.stdout
    if not args.json:
        out.write(f"{'status':<8} {'kind':<24} {'events':>6} {'DLP mGy.cm':>11} {'activity MBq':>12}  file\n")
    for file in args.files:
        result = parse_file(file)
        if result["status"] == "error":
            failed += 1
        if args.json:
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
        else:
            out.write(_row(result) + "\n")
            if result["error"]:
                out.write(f"         {result['error']}\n")
            for warning in result["warnings"]:
                out.write(f"         warning: {warning}\n")
        out.flush()
    return 1 if failed else 0


def _row(result: dict[str, Any]) -> str:
    ct = result["ct"]
    events = len(ct["events"]) if ct["events"] else ""
    dlp = "" if ct["total_dlp_mgycm"] is None else f"{ct['total_dlp_mgycm']:.1f}"
    activities = [
        a["activity_mbq"] for a in result["radiopharmaceutical"] if a.get("activity_mbq") is not None
    ]
    activity = "/".join(f"{a:.1f}" for a in activities)
    return (
        f"{result['status']:<8} {result['kind']:<24} {events!s:>6} {dlp:>11} {activity:>12}  {result['file']}"
    )
