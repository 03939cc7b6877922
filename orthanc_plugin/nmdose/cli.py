"""The `nmdose` command line: global options, then one sub-command per stage.

Each stage's command module exposes ``register(subparsers)`` (listed in ``COMMANDS``), which adds its parsers and
sets ``func`` to a handler ``handler(args, ctx) -> int``. Handlers raise :class:`NmdoseError` for anything the
user must fix; ``main`` prints it as one line and exits non-zero.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nmdose import __version__, config_cmd, echo, stack
from nmdose.alerts import cli as alerts_cli
from nmdose.audit import cli as audit_cli
from nmdose.census import cli as census_cli
from nmdose.db import cli as db_cli
from nmdose.dose import cli as dose_cli
from nmdose.dose import names_cli
from nmdose.errors import NmdoseError
from nmdose.forward import cli as forward_cli
from nmdose.importer import cli as import_cli
from nmdose.projects import cli as project_cli
from nmdose.pseudonymise import cli as pseudonymise_cli
from nmdose.retrieve import cli as retrieve_cli
from nmdose.security import cli as security_cli
from nmdose.simulate import cli as simulate_cli
from nmdose.web import proxy
from nmdose.web.dose_views import warm_default_views


def _dose(subparsers: Any) -> None:
    # the dose worker warms the dose page's opening answers; handed in here, so dose/ never imports web/
    dose_cli.register(subparsers, warm_views=warm_default_views)


# What adds each sub-command, in the order they appear in --help. The modules are imported, not named: one that
# is missing or misspelt fails every `nmdose` command at once instead of quietly dropping its sub-command.
COMMANDS: tuple[Callable[[Any], None], ...] = (
    config_cmd.register,
    db_cli.register,
    stack.register,
    echo.register,
    security_cli.register,
    proxy.register,
    simulate_cli.register,
    census_cli.register,
    retrieve_cli.register,
    forward_cli.register,
    _dose,
    names_cli.register,
    alerts_cli.register,
    audit_cli.register,
    import_cli.register,
    project_cli.register,
    pseudonymise_cli.register,
)


class Context:
    """What every handler gets: the parsed global options and the configuration, loaded once on first use."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._config = None

    @property
    def config(self):
        if self._config is None:
            from nmdose.config import load_config

            self._config = load_config(
                Path(self.args.config_dir),
                running_mode=self.args.running_mode,
                auth_mode=self.args.auth_mode,
                var_dir=Path(self.args.var_dir) if self.args.var_dir else None,
            )
        return self._config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nmdose", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nmdose {__version__}")
    parser.add_argument(
        "--running-mode",
        choices=["dev", "test", "prod"],
        default=None,
        help="default: NMDOSE_RUNNING_MODE from .env, else dev",
    )
    parser.add_argument(
        "--auth-mode",
        choices=["dev", "keycloak"],
        default=None,
        help="default: NMDOSE_AUTH_MODE from .env, else dev",
    )
    parser.add_argument(
        "--config-dir",
        default=str(default_config_dir()),
        help="folder holding the YAML files and .env (default: %(default)s)",
    )
    parser.add_argument("--var-dir", default=None, help="runtime folder (default: from config, var/)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def default_config_dir() -> Path:
    """`config/` of the checkout this package runs from, else ./config."""
    here = Path(__file__).resolve().parents[2] / "config"
    return here if here.is_dir() else Path.cwd() / "config"


def main(argv: Sequence[str] | None = None) -> int:
    # Every file this process creates under var/ (stage and retrieval logs), and those of the DCMTK tools it
    # starts, stays private: umask 077 (docs/architecture.md, least privilege).
    os.umask(0o077)
    parser = build_parser()
    args = parser.parse_args(argv)
    # The terminal shows warnings and errors (or everything with -v); per-study lines go to var/log/<stage>.log.
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[console])
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args, Context(args)) or 0)
    except NmdoseError as exc:
        print(f"nmdose: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("nmdose: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
