"""`nmdose certs init|status` and `nmdose security profile`: DICOM TLS certificates and the peer profile."""

from __future__ import annotations

import json

from nmdose.errors import ConfigError
from nmdose.security import certs, profile, tls


def register(sub) -> None:
    p = sub.add_parser("certs", help="DICOM TLS certificates: a local CA for dev/test, and their expiry")
    csub = p.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    i = csub.add_parser("init", help="make a local CA and a certificate per node (kept if present)")
    i.add_argument(
        "--days", type=int, default=825, help="validity of node certificates (default: %(default)s)"
    )
    i.add_argument("--force", action="store_true", help="replace the CA and every certificate")
    i.set_defaults(func=cmd_init)
    s = csub.add_parser("status", help="subject and expiry of every certificate in use (warns under 30 days)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    sec = sub.add_parser("security", help="the DICOM security profile: node x peer x allowed services")
    ssub = sec.add_subparsers(dest="security_command", metavar="ACTION", required=True)
    pr = ssub.add_parser("profile", help="which peer may ask which service of each node (docs/security.md)")
    pr.add_argument("--json", action="store_true")
    pr.add_argument("--markdown", action="store_true", help="as the table in docs/security.md")
    pr.set_defaults(func=cmd_profile)


def cmd_init(args, ctx) -> int:
    cfg = ctx.config
    if cfg.tls.ca_certificates and not args.force:
        raise ConfigError(
            f"{cfg.config_dir / 'dicom_network_entities.yaml'}: tls.ca_certificates is set to a site CA: "
            "`nmdose certs init` makes a local CA only for dev/test (unset it, or pass --force)"
        )
    made = certs.init(cfg, days=args.days, force=args.force)
    folder = tls.certificates_dir(cfg)
    print(
        f"certificates in {folder}: " + (", ".join(sorted(made)) + " made" if made else "all present, kept")
    )
    return 0


def cmd_status(args, ctx) -> int:
    report = tls.identity_report(ctx.config)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for identity, info in report.items():
            if "error" in info:
                print(f"{identity:16} ERROR {info['error']}")
            else:
                flag = f"  WARNING: {info['warning']}" if info.get("warning") else ""
                print(
                    f"{identity:16} {info['subject']:40} until {info['not_after']} ({info['days_left']} days){flag}"
                )
    bad = any("error" in i or i.get("warning") for i in report.values())
    return 1 if bad else 0


def cmd_profile(args, ctx) -> int:
    cfg = ctx.config
    rows = profile.table(cfg)
    if args.json:
        print(json.dumps({"rows": rows, "warnings": cfg.warnings}, indent=2))
        return 0
    if args.markdown:
        print("| node | peer (AE title @ host) | may ask | TLS | where | why |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['node']} | {r['peer']} ({r['aet']} @ {r['host']}) | {r['services']} | {r['tls']} | "
                  f"{r['where']} | {r['why']} |")  # fmt: skip
        return 0
    print(f"{'node':15} {'peer':15} {'AET@host':28} {'may ask':26} {'tls':4} where")
    for r in rows:
        print(f"{r['node']:15} {r['peer']:15} {r['aet'] + '@' + r['host']:28} {r['services']:26} {r['tls']:4} "
              f"{r['where']}")  # fmt: skip
    print(
        "every node: called AE title and peer host checked; C-ECHO open to all; nothing else to unknown peers"
    )
    for line in cfg.warnings:
        print(f"warning: {line}")
    return 0
