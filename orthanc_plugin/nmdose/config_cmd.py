"""`nmdose config check`: validate every configuration file and print the effective configuration."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("config", help="configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csub.add_parser("check", help="validate the configuration and print it (secrets masked)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_check)


def cmd_check(args, ctx) -> int:
    from nmdose.alerts.settings import load as load_alert_settings

    data = ctx.config.as_dict()
    # config/alerts.yaml is read by the alert sender, not by Config: checked here too (a ConfigError naming the
    # file and the key, exit code 2, like every other file)
    alerts = load_alert_settings(ctx.config)
    data["alerts"] = {
        "smtp": {"host": alerts.smtp.host, "port": alerts.smtp.port, "security": alerts.smtp.security},
        "page_url": alerts.page_url,
    }
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    print(f"configuration OK ({data['config_dir']})")
    print(
        f"running mode {data['running_mode']}, auth mode {data['auth_mode']}, "
        f"source {data['source_node']} (ENABLE_SIMULATION={int(data['enable_simulation'])})"
    )
    for name, node in data["nodes"].items():
        http = f" http:{node['http_port']}" if node["http_port"] else ""
        flags = " local" if node["local"] else ""
        print(
            f"  {name:16} {node['aet']:16} {node['host']}:{node['port']}{http}{' tls' if node['tls'] else ''}{flags}"
        )
    pg = data["postgresql"]
    print(
        f"  postgresql       {pg['user']}@{pg['host']}:{pg['port']}/{pg['database']} "
        f"(orthanc index: {pg['orthanc_database']}){' local' if pg['local'] else ''}"
    )
    r = data["retrieve"]
    print(
        f"  targets: {', '.join(r['target_modalities'])}; {len(r['target_descriptions'])} descriptions; "
        f"backend {r['backend']}; transfer {r['transfer']['strategy']}"
    )
    smtp = data["alerts"]["smtp"]
    print(
        f"  alerts e-mail: {smtp['host']}:{smtp['port']} ({smtp['security']})"
        if smtp["host"]
        else "  alerts e-mail: off (config/alerts.yaml: smtp.host not set)"
    )
    for k, v in data["env"].items():
        print(f"  env {k}={v}")
    return 0
