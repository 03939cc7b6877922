"""`nmdose pseudonymise --project NAME`: pseudonymised copies of a research project's studies (docs/pseudonymise.md).

Also `--list` (the project's copies) and `--reidentify PSEUDONYM` (the PatientIDs behind a pseudonym; audited:
this is the re-identification the privacy officer reviews). The command line runs with the server's secrets and
database: who may run it is who may log in to the server (docs/security.md); the web pages never re-identify a
project pseudonym.
"""

from __future__ import annotations

import json
from pathlib import Path

from nmdose.pseudonymise import deid, export


def register(sub) -> None:
    p = sub.add_parser(
        "pseudonymise",
        help="copy a project's studies, de-identified (PS3.15 basic profile) with keyed pseudonyms, "
        "into the pseudoPACS node or a folder",
    )
    p.add_argument("--project", required=True, help="the research project (nmdose project list)")
    p.add_argument("--uid", action="append", default=[], metavar="UID",
                   help="only these studies of the project (repeatable; default: all of them)")  # fmt: skip
    where = p.add_mutually_exclusive_group()
    where.add_argument("--folder", type=Path, help="write files into this folder instead of a node")
    where.add_argument(
        "--node", default=export.NODE, help=f"the Orthanc node to store into (default {export.NODE})"
    )
    p.add_argument("--dates", choices=("shift", "keep"), default="shift",
                   help="shift every date of a patient by a keyed number of days (default) or keep them")  # fmt: skip
    p.add_argument("--no-dose-attributes", action="store_true",
                   help="let the profile remove the SR content, radiopharmaceutical, age, sex, weight and size")  # fmt: skip
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="list the project's copies and exit")
    mode.add_argument("--reidentify", metavar="PSEUDONYM", help="the PatientIDs behind a pseudonym (audited)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_pseudonymise)


def cmd_pseudonymise(args, ctx) -> int:
    cfg = ctx.config
    if args.list:
        rows = export.copies(cfg, args.project)
        for row in rows:
            print(json.dumps(row, default=str) if args.json else
                  f"{row['study_instance_uid']} -> {row['copy_study_uid']} ({row['pseudonym']}) {row['target']}: "
                  f"{row['state']}, {row['instances']} instances")  # fmt: skip
        return 0
    if args.reidentify:
        from nmdose.audit.actions import record_action

        found = export.reidentify(cfg, args.project, args.reidentify)
        record_action(cfg, "pseudonymise reidentify", study_uids=[f["study_instance_uid"] for f in found],
                      params={"project": args.project, "pseudonym": args.reidentify}, rows=len(found))  # fmt: skip
        for f in found:
            print(json.dumps(f) if args.json else f"{f['patient_id']}\t{f['study_instance_uid']}")
        return 0 if found else 1
    uids = args.uid or export.project_studies(cfg, args.project)
    unknown = set(args.uid) - set(export.project_studies(cfg, args.project)) if args.uid else set()
    if unknown:
        print(f"not studies of project {args.project}: {', '.join(sorted(unknown))}")
        return 2
    options = deid.Options(dates=args.dates, keep_dose=not args.no_dose_attributes)
    outcomes = export.export(cfg, args.project, uids, folder=args.folder, node=args.node, options=options)
    for o in outcomes:
        if args.json:
            print(json.dumps(o.__dict__))
        else:
            extra = f": {o.error}" if o.error else ""
            print(f"{o.study_instance_uid} -> {','.join(o.copy_study_uids) or '-'} ({','.join(o.pseudonyms) or '-'})"
                  f" {o.state}, {o.instances} instances, {o.stored} stored, {o.already_stored} already there{extra}")  # fmt: skip
    return 0 if all(o.state == "done" for o in outcomes) else 1
