"""`nmdose simulate`: generate a synthetic department and fill the simulation PACS with it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

from nmdose.errors import ConfigError
from nmdose.simulate.generator import generate
from nmdose.simulate.manifest import Manifest
from nmdose.simulate.model import SimulationError
from nmdose.simulate.upload import UploadResult, upload

NODE = "simulationPACS"


def register(sub) -> None:
    """Add the `simulate` sub-command."""
    p = sub.add_parser(
        "simulate", help="generate synthetic NM/PET-CT/CT studies and fill the simulation PACS"
    )
    p.add_argument("--studies", type=int, default=200, help="number of studies (default: %(default)s)")
    p.add_argument(
        "--years", type=int, default=5, help="years of history before today (default: %(default)s)"
    )
    p.add_argument(
        "--seed", type=int, default=1, help="random seed; same seed, same files (default: %(default)s)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="folder for the files (default: var/simulation/seedS)"
    )
    p.add_argument(
        "--today",
        type=date.fromisoformat,
        default=None,
        help="anchor date YYYY-MM-DD (default: today); fix it for byte-identical runs",
    )
    p.add_argument(
        "--realistic-size", action="store_true", help="512x512 CT, full PET/NM matrices and slices"
    )
    p.add_argument("--no-upload", action="store_true", help="only write the files and the manifest")
    p.add_argument(
        "--method",
        choices=["storescu", "rest"],
        default="storescu",
        help="C-STORE with DCMTK storescu (default) or Orthanc REST POST /instances",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=handler)


class _Progress:
    """A progress bar on a terminal, a plain line every 10 % otherwise (on stderr)."""

    def __init__(self, label: str, enabled: bool = True):
        self.label = label
        self.tty = sys.stderr.isatty()
        self.enabled = enabled
        self.last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if self.tty:
            width = 30
            filled = width * done // total
            sys.stderr.write(f"\r{self.label:<10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            if done >= total:
                sys.stderr.write("\n")
            sys.stderr.flush()
            return
        step = done * 10 // total
        if step != self.last and (step > self.last or done == total):
            self.last = step
            print(f"{self.label}: {done}/{total}", file=sys.stderr, flush=True)


def handler(args: argparse.Namespace, ctx) -> int:
    """Generate, upload unless --no-upload, then print the summary."""
    out = args.out or Path(ctx.config.var_dir) / "simulation" / f"seed{args.seed}"
    quiet = args.json
    started = time.monotonic()
    try:
        manifest = generate(
            out,
            studies=args.studies,
            years=args.years,
            seed=args.seed,
            realistic_size=args.realistic_size,
            today=args.today,
            progress=_Progress("generate", not quiet),
        )
    except OSError as exc:
        raise SimulationError(f"{out}: cannot write the simulation ({exc.strerror or exc})") from None
    generated_s = time.monotonic() - started
    result: UploadResult | None = None
    node = None
    if not args.no_upload:
        node = ctx.config.nodes.get(NODE)
        if node is None:
            raise ConfigError(
                f"dicom_network_entities.yaml: node {NODE} missing; needed to upload the simulation"
            )
        result = upload(
            out, node, method=args.method, progress=_Progress("upload", not quiet), cfg=ctx.config
        )
    if args.json:
        print(json.dumps(_as_json(manifest, out, generated_s, result, node), ensure_ascii=False, indent=1))
    else:
        _print_summary(manifest, out, generated_s, result, node)
    return 0


def _as_json(manifest: Manifest, out: Path, generated_s: float, result: UploadResult | None, node) -> dict:
    data = {
        "manifest": str(out / "manifest.json"),
        "seed": manifest.seed,
        "parameters": manifest.parameters,
        "generate_seconds": round(generated_s, 2),
        "summary": manifest.summary,
        "upload": None,
    }
    if result is not None:
        data["upload"] = {
            "node": NODE,
            "aet": node.aet,
            "address": f"{node.host}:{node.port}",
            "method": result.method,
            "files": result.files,
            "seconds": round(result.seconds, 2),
            "instances_per_s": round(result.instances_per_s, 1),
            "verified_studies": result.studies_checked,
        }
    return data


def _print_summary(
    manifest: Manifest, out: Path, generated_s: float, result: UploadResult | None, node
) -> None:
    s = manifest.summary
    print(
        f"simulation seed {manifest.seed}: {s['studies']} studies, {s['series']} series, {s['instances']} instances "
        f"({s['first_date']}..{s['last_date']}) in {generated_s:.1f} s"
    )
    print(f"manifest: {out / 'manifest.json'}")
    print(f"{'modality':<9}{'studies':>9}{'series':>9}{'instances':>11}")
    for mod, c in s["by_modality"].items():
        print(f"{mod:<9}{c['studies']:>9}{c['series']:>9}{c['instances']:>11}")
    print("mess planted (studies):")
    for flag, count in s["mess"].items():
        print(f"  {flag:<36}{count:>6}")
    if result is not None:
        print(
            f"uploaded to {NODE} ({node.aet}@{node.host}:{node.port}) by {result.method}: {result.files} files in "
            f"{result.seconds:.1f} s ({result.instances_per_s:.0f} instances/s), {result.studies_checked} studies "
            f"verified"
        )
    else:
        print("not uploaded (--no-upload)")
