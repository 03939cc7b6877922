"""The local embedded stack: PostgreSQL and the Orthanc nodes marked `local: true`, under var/.

`nmdose stack up` initialises and starts them on the configured ports; `stack down` stops exactly the processes
it started (their pid files, checked against the process command line) and is safe to repeat. Every DCMTK-based
process gets TCP_NODELAY=1 (DCMTK leaves Nagle's algorithm on without it: a factor of 6-7 in DICOM throughput on
loopback, docs/architecture.md "Why `TCP_NODELAY=1` everywhere").
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from nmdose.config import Config, Node
from nmdose.errors import StackError
from nmdose.pacs.dcmtk import dicom_env
from nmdose.ports import free_port, port_in_use  # noqa: F401  (free_port: tests and benches import it from here)
from nmdose.secrets import PSEUDONYM_KEY, EnvSecretStore
from nmdose.security import profile, tls
from nmdose.web import dicomweb
from nmdose.web.explorer2 import explorer2_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
# The dose-PACS stand-in's Orthanc Python script (nmdose.dose.standin_hook: dose objects into the dose spool).
DOSE_STANDIN_SCRIPT = REPO_ROOT / "orthanc_plugin" / "dose_standin_entry.py"
DOSE_WORKER = "dose-worker"
IMPORT_WATCH = "import-watch"  # `nmdose import watch` (docs/import.md), when import.yaml enables it
# Every process the stack starts (Orthanc, the dose worker, PostgreSQL's pg_ctl) creates private files: storage,
# logs, the dose spool and generated configuration are never readable by other users of the machine.
UMASK = 0o077
# The Orthanc index role's password reaches Orthanc in this environment variable, never in a generated file.
ORTHANC_DB_PASSWORD_ENV = "NMDOSE_ORTHANC_DB_PASSWORD"
# Servers started by this process, so that stopping them also reaps them (no zombies in long-lived callers).
_children: dict[int, subprocess.Popen] = {}


@dataclass
class ProcessStatus:
    node: str
    kind: str
    state: str  # running | stopped | stale
    pid: int | None
    address: str
    http: str | None
    log: str


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (0600, also when it existed with another mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _open_private_log(path: Path):
    """Append to a log file only its owner may read (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def find_orthanc() -> str:
    path = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if not path:
        raise StackError("Orthanc binary not found: run `make deps` (Debian package orthanc)")
    return path


def find_plugin(name: str) -> str:
    for folder in PLUGIN_DIRS:
        candidate = folder / name
        if candidate.exists():
            return str(candidate)
    raise StackError(
        f"Orthanc plugin {name} not found in {', '.join(map(str, PLUGIN_DIRS))}: run `make deps`"
    )


def find_pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not candidates:
        raise StackError("PostgreSQL server binaries not found in /usr/lib/postgresql: run `make deps`")
    return candidates[-1].parent


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not running.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stack:
    """Start, stop and inspect the local servers of one configuration."""

    def __init__(self, cfg: Config, *, research_plugin: bool = True):
        self.cfg = cfg
        self.var = cfg.var_dir
        self.research_plugin = research_plugin

    # ----- paths
    def pid_file(self, name: str) -> Path:
        return self.var / "run" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.var / "log" / f"{name}.log"

    def orthanc_dir(self, name: str) -> Path:
        return self.var / "orthanc" / name

    @property
    def pg_data(self) -> Path:
        return self.var / "postgresql" / "data"

    def local_orthanc_nodes(self) -> dict[str, Node]:
        return {n: node for n, node in self.cfg.active_nodes().items() if node.local}

    # ----- public operations
    def up(self) -> list[ProcessStatus]:
        self.secure_var()
        if isinstance(self.cfg.secrets, EnvSecretStore):  # generated before any process reads it: no race
            self.cfg.secrets.ensure(PSEUDONYM_KEY)
        if self.cfg.postgresql.local:
            self.postgres_up()
            from nmdose.db import connect
            from nmdose.db.migrate import migrate

            with contextlib.closing(
                connect(self.cfg, role="owner")
            ) as conn:  # then the runtime roles' grants
                migrate(conn, self.cfg.migrations_dir)
        for name in self.local_orthanc_nodes():
            self.orthanc_up(name)
        if self._runs_dose_worker():
            self.dose_worker_up()
        if self._runs_import_watch():
            self.import_watch_up()
        return self.status()

    def down(self) -> list[str]:
        # first the services: they write to PostgreSQL (the importer also C-STOREs into the research PACS)
        stopped = [IMPORT_WATCH] if self.import_watch_down() else []
        stopped += [DOSE_WORKER] if self.dose_worker_down() else []
        for name in reversed(list(self.local_orthanc_nodes())):
            if self.orthanc_down(name):
                stopped.append(name)
        if self.cfg.postgresql.local and self.postgres_down():
            stopped.append("postgresql")
        return stopped

    def status(self) -> list[ProcessStatus]:
        result = []
        if self.cfg.postgresql.local:
            pg = self.cfg.postgresql
            pid = self._postgres_pid()
            state = "running" if pid and _pid_alive(pid) else ("stale" if pid else "stopped")
            result.append(
                ProcessStatus(
                    "postgresql",
                    "postgresql",
                    state,
                    pid if state == "running" else None,
                    f"{pg.host}:{pg.port}",
                    None,
                    str(self.log_file("postgresql")),
                )
            )
        for name, node in self.local_orthanc_nodes().items():
            pid = self._read_pid(name)
            alive = bool(pid and _pid_alive(pid) and str(self.orthanc_dir(name)) in _cmdline(pid))
            state = "running" if alive else ("stale" if pid else "stopped")
            result.append(
                ProcessStatus(
                    name,
                    "orthanc",
                    state,
                    pid if alive else None,
                    f"{node.aet}@{node.address}",
                    node.http_url,
                    str(self.log_file(name)),
                )
            )
        if self._runs_dose_worker():  # the same condition under which `up` starts it
            result.append(self.dose_worker_status())
        if self._runs_import_watch():
            result.append(self.import_watch_status())
        return result

    # ----- file modes
    def secure_var(self) -> None:
        """var/ closed to other users: folders 0700, files 0600 (processes we start run with umask 077). As root,
        PostgreSQL runs as the `postgres` user and must reach var/postgresql and its log: var/ and var/log belong
        to the group `postgres` with mode 0710 (the group may pass through, not list or read), var/postgresql to
        the `postgres` user (0700). Files of older installs (0644 storage, logs) are tightened once."""
        for sub in ("run", "log", "orthanc"):
            (self.var / sub).mkdir(parents=True, exist_ok=True)
        marker = self.var / "run" / ".modes-077"
        if not marker.exists():
            self._tighten(self.var)
            _write_private(marker, "file modes tightened to umask 077 by nmdose stack\n")
        gid = self._pg_gid()
        for path in (self.var, self.var / "log"):
            if gid is not None:
                os.chown(path, os.geteuid(), gid)
            os.chmod(path, 0o710 if gid is not None else 0o700)
        for sub in ("run", "orthanc"):
            os.chmod(self.var / sub, 0o700)

    def _tighten(self, root: Path) -> None:
        """Take group and other permissions off what an older stack left under var/ (not PostgreSQL's data:
        PostgreSQL keeps its own files 0600 and its folders 0700)."""
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            if here == self.var / "postgresql":
                dirs.clear()
                continue
            for name in [*dirs, *files]:
                path = here / name
                with contextlib.suppress(OSError):
                    st = path.lstat()
                    if not os.path.islink(path) and st.st_mode & 0o077:
                        os.chmod(path, st.st_mode & 0o700)

    def _pg_gid(self) -> int | None:
        """The `postgres` group when PostgreSQL runs as the `postgres` user (as root), else None."""
        user = self._pg_user() if self.cfg.postgresql.local else None
        return pwd.getpwnam(user).pw_gid if user else None

    # ----- PostgreSQL
    def _pg_user(self) -> str | None:
        """PostgreSQL refuses to run as root: as root, run it as the `postgres` system user."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "running as root but there is no `postgres` system user: run `make deps`"
            ) from None
        return "postgres"

    def _as_pg_user(self, argv: list[str]) -> list[str]:
        user = self._pg_user()
        return ["runuser", "-u", user, "--", *argv] if user else argv

    def _chown_pg(self, path: Path) -> None:
        user = self._pg_user()
        if user:
            pw = pwd.getpwnam(user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _check_traversable(self, path: Path) -> None:
        """The folders above var/ must let the postgres user through (var/ itself: group postgres, 0710)."""
        if not self._pg_user():
            return
        for parent in path.parents:
            if parent.exists() and not parent.stat().st_mode & 0o001:
                raise StackError(
                    f"postgresql: {parent} is not traversable by the postgres user (mode "
                    f"{oct(parent.stat().st_mode & 0o777)}): choose a var dir under a world-executable path"
                )

    def _postgres_pid(self) -> int | None:
        try:
            return int((self.pg_data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def postgres_up(self) -> None:
        pg = self.cfg.postgresql
        bindir = find_pg_bin()
        log = self.log_file("postgresql")
        pid = self._postgres_pid()
        if pid and _pid_alive(pid):
            self._create_databases()
            return
        if port_in_use(pg.host, pg.port):
            raise StackError(
                f"postgresql: port {pg.host}:{pg.port} is busy (another server?); change port in "
                f"{self.cfg.config_dir / 'postgresql.yaml'}; log: {log}"
            )
        self._check_traversable(self.var)
        password = self.ensure_db_secrets()["admin"]
        base = self.pg_data.parent
        base.mkdir(parents=True, exist_ok=True)
        self._chown_pg(base)
        os.chmod(base, 0o700)
        rundir = base / "socket"
        rundir.mkdir(exist_ok=True)
        self._chown_pg(rundir)
        os.chmod(rundir, 0o700)
        _open_private_log(log).close()
        self._chown_pg(log)
        if not (self.pg_data / "PG_VERSION").exists():
            pwfile = base / "pwfile"
            _write_private(pwfile, password + "\n")
            self._chown_pg(pwfile)
            try:
                proc = subprocess.run(
                    self._as_pg_user(
                        [
                            str(bindir / "initdb"),
                            "-D",
                            str(self.pg_data),
                            "-U",
                            pg.user,
                            f"--pwfile={pwfile}",
                            "--auth=scram-sha-256",
                            "-E",
                            "UTF8",
                            "--no-locale",
                        ]
                    ),
                    capture_output=True,
                    text=True,
                    timeout=120,
                    umask=UMASK,
                )
            finally:
                pwfile.unlink(missing_ok=True)
            if proc.returncode != 0:
                shutil.rmtree(self.pg_data, ignore_errors=True)
                raise StackError(f"postgresql: initdb failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        opts = (
            f"-p {pg.port} -c listen_addresses={pg.host} -k {rundir} "
            "-c max_connections=200 -c shared_buffers=256MB -c fsync=on"
        )
        proc = subprocess.run(
            self._as_pg_user(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(self.pg_data),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    opts,
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=90,
            umask=UMASK,
        )
        if proc.returncode != 0:
            raise StackError(f"postgresql: failed to start on {pg.host}:{pg.port}; log: {log}\n{_tail(log)}")
        self._create_databases()

    def ensure_db_secrets(self) -> dict[str, str]:
        """role -> password of every database role: generated into var/secrets.env (0600) when missing locally,
        from the secret store (Vault) otherwise."""
        store = self.cfg.secrets
        get = store.ensure if isinstance(store, EnvSecretStore) else store.get
        return {role: get(name) for role, name in self.cfg.postgresql.ROLE_SECRETS.items()}

    def _create_databases(self) -> None:
        """As the bootstrap superuser: the roles (passwords from the secret store), both databases with their
        owners, and the objects of older installs handed over (nmdose.db.roles.bootstrap)."""
        from nmdose.db import connect
        from nmdose.db.roles import bootstrap

        self.ensure_db_secrets()
        deadline = time.monotonic() + 30
        while True:
            try:
                connect(self.cfg, "postgres", role="admin").close()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        bootstrap(self.cfg)

    def postgres_down(self) -> bool:
        pid = self._postgres_pid()
        if not pid or not _pid_alive(pid):
            return False
        bindir = find_pg_bin()
        proc = subprocess.run(
            self._as_pg_user(
                [str(bindir / "pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w", "-t", "60", "stop"]
            ),
            capture_output=True,
            text=True,
            timeout=90,
            umask=UMASK,
        )
        if proc.returncode != 0 and _pid_alive(pid):
            raise StackError(f"postgresql: pg_ctl stop failed: {proc.stderr.strip()}")
        return True

    # ----- Orthanc
    def _read_pid(self, name: str) -> int | None:
        try:
            return int(self.pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None

    def orthanc_config(self, name: str) -> dict[str, Any]:
        """The generated Orthanc configuration of a local node (research: orthanc.json + plugin + index)."""
        cfg, node = self.cfg, self.cfg.nodes[name]
        base = self.orthanc_dir(name)
        research = name == "researchPACS"
        conf: dict[str, Any] = {}
        if research:
            conf.update(json.loads((REPO_ROOT / "orthanc.json").read_text()))
        else:
            conf.update(
                {
                    "RemoteAccessAllowed": False,
                    "AuthenticationEnabled": False,
                    "KeepAlive": True,
                    "TcpNoDelay": True,
                    "StableAge": 5,
                    "SyncStorageArea": False,
                    "ConcurrentJobs": 4,
                    "JobsHistorySize": 100,
                    "SaveJobs": False,
                    "DefaultEncoding": "Utf8",
                }
            )
            conf["LimitFindResults"] = node.find_limit or 0
        conf.update(
            {
                "Name": f"nmdose {name}",
                "DicomAet": node.aet,
                "DicomPort": node.port,
                "HttpPort": node.http_port,
                "StorageDirectory": str(base / "storage"),
                "IndexDirectory": str(base / "index"),
                "DicomScuTimeout": int(node.timeout_s),
                "Plugins": [],
            }
        )
        if research:
            pg = cfg.postgresql
            conf["PostgreSQL"] = {
                **conf.get("PostgreSQL", {}),
                "Host": pg.host,
                "Port": pg.port,
                "Database": pg.orthanc_database,
                "Username": pg.orthanc_user,
                # Orthanc substitutes ${VAR} from its environment (Orthanc >= 1.5): no password in the file
                "Password": "${" + ORTHANC_DB_PASSWORD_ENV + "}",
            }
            conf["Plugins"].append(find_plugin("libOrthancPostgreSQLIndex.so"))
            if self.research_plugin:
                conf["Plugins"].append(find_plugin("libOrthancPython.so"))
                conf["PythonScript"] = str(REPO_ROOT / "orthanc_plugin" / "entry.py")
                conf["OrthancExplorer2"] = explorer2_settings()  # ignored by Orthanc 1.10; OE2's buttons
                # DICOMweb for the OHIF viewer, gated by the plugin (docs/viewer.md)
                conf["Plugins"].append(find_plugin(dicomweb.PLUGIN))
                conf["DicomWeb"] = dicomweb.dicomweb_settings()
                conf["Nmdose"] = {
                    "ConfigDir": str(cfg.config_dir),
                    "VarDir": str(cfg.var_dir),
                    "RunningMode": cfg.running_mode,
                    "AuthMode": cfg.auth_mode,
                    "EnableSimulation": cfg.enable_simulation,
                    "Node": name,
                    "SitePackages": _site_packages(),
                }
        if self._is_local_dose_node(name):
            conf["Plugins"].append(find_plugin("libOrthancPython.so"))
            conf["PythonScript"] = str(DOSE_STANDIN_SCRIPT)
            conf["NmdoseDoseStandin"] = self.dose_standin_settings(name)
        # The security profile (peers and their services, checks on) and DICOM TLS, then the node's own
        # overrides, which prod refuses when they loosen the profile (nmdose.security.policy).
        conf.update(profile.orthanc_settings(cfg, name))
        conf.update(tls.orthanc_settings(cfg, name))
        conf.update(node.orthanc_settings)
        return conf

    # ----- dose PACS stand-in: its Python hook into the dose spool, and the worker draining it (issues 6, 14)
    def _is_local_dose_node(self, name: str) -> bool:
        node = self.cfg.nodes.get(name)
        return name == "dosePACS" and node is not None and node.local

    def _runs_dose_worker(self) -> bool:
        return "dosePACS" in self.local_orthanc_nodes()

    def dose_standin_settings(self, name: str) -> dict[str, Any]:
        """The stand-in hook's section of its Orthanc configuration: the spool, who may send dose objects (AE
        title -> hosts, from the security profile), the file holding its position in Orthanc's change log."""
        senders = profile.store_senders(self.cfg, name)
        return {
            "Spool": str(self.cfg.dose_spool),
            "StoreSenders": {aet: sorted(hosts) for aet, hosts in sorted(senders.items())},
            "CursorFile": str(self.orthanc_dir(name) / "nmdose-standin.cursor"),
            "SitePackages": _site_packages(),
        }

    def _prepare_dose_spool(self, name: str) -> None:
        """The spool's folders (0700), before the stand-in starts writing into them."""
        from nmdose.dose.spool import ensure

        spool = ensure(self.cfg.dose_spool)
        os.chmod(spool, 0o700)
        if spool.parent == self.var / "spool":
            os.chmod(spool.parent, 0o700)
        # the settings script of the Lua hook this replaced (issue 14)
        (self.orthanc_dir(name) / "nmdose_settings.lua").unlink(missing_ok=True)

    def _is_our_worker(self, pid: int | None) -> bool:
        """The pid runs and is this stack's worker (its command line names this var dir and `worker`)."""
        if not pid or not _pid_alive(pid):
            return False
        cmdline = _cmdline(pid)
        return str(self.var) in cmdline and "worker" in cmdline

    def dose_worker_status(self) -> ProcessStatus:
        """The `nmdose dose worker` row of `stack status`: its state and pid, the spool it drains, its log."""
        pid = self._read_pid(DOSE_WORKER)
        alive = self._is_our_worker(pid)
        state = "running" if alive else ("stale" if pid else "stopped")
        return ProcessStatus(DOSE_WORKER, "worker", state, pid if alive else None, f"spool {self.cfg.dose_spool}",
                             None, str(self.log_file(DOSE_WORKER)))  # fmt: skip

    def dose_worker_up(self) -> None:
        """Start `nmdose dose worker` in the background (pid file, log), unless it already runs."""
        if self.dose_worker_status().state == "running":
            return
        self._service_up(DOSE_WORKER, ["dose", "worker"])

    def dose_worker_down(self, timeout_s: float = 30) -> bool:
        """Stop the worker this stack started (pid file + command line check)."""
        return self._service_down(DOSE_WORKER, self._is_our_worker, timeout_s)

    def _service_up(self, name: str, command: list[str]) -> None:
        """Start `nmdose <command>` for this stack in the background: its own session, a private log, a pid
        file; StackError with the log's tail when it exits at once."""
        dead = _children.pop(self._read_pid(name) or 0, None)
        if dead is not None:  # a process of ours that exited: reap it before starting the next
            dead.poll()
        log = self.log_file(name)
        argv = [sys.executable, "-m", "nmdose.cli", "--config-dir", str(self.cfg.config_dir),
                "--var-dir", str(self.var), *command]  # fmt: skip
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT / "orthanc_plugin"), env.get("PYTHONPATH", "")) if p
        )
        with _open_private_log(log) as out:
            out.write(
                f"\n===== nmdose stack: starting {name} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
            )
            out.flush()
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True, umask=UMASK)  # fmt: skip
        _write_private(self.pid_file(name), f"{proc.pid}\n")
        _children[proc.pid] = proc
        time.sleep(0.3)
        if proc.poll() is not None:
            self.pid_file(name).unlink(missing_ok=True)
            raise StackError(f"{name}: exited with code {proc.returncode} at start; log: {log}\n{_tail(log)}")

    def _service_down(self, name: str, is_ours, timeout_s: float) -> bool:
        """Stop the service `name` this stack started (pid file + `is_ours(pid)` command-line check): SIGTERM,
        SIGKILL after `timeout_s`; reap it; remove the pid file. True when a process was stopped."""
        pid = self._read_pid(name)
        if not pid:
            return False
        stopped = False
        if is_ours(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            stopped = True
        child = _children.pop(pid, None)
        if child is not None:
            child.wait()
        self.pid_file(name).unlink(missing_ok=True)
        return stopped

    # ----- the watch-folder importer (docs/import.md): `nmdose import watch`, when import.yaml enables it
    def _runs_import_watch(self) -> bool:
        return self.cfg.imports.enabled and self.cfg.imports.watch

    def _is_our_import_watch(self, pid: int | None) -> bool:
        if not pid or not _pid_alive(pid):
            return False
        cmdline = _cmdline(pid)
        return str(self.var) in cmdline and "import" in cmdline and "watch" in cmdline

    def import_watch_status(self) -> ProcessStatus:
        """The `import-watch` row of `stack status`: state, pid, the drop folder it watches, its log."""
        pid = self._read_pid(IMPORT_WATCH)
        alive = self._is_our_import_watch(pid)
        state = "running" if alive else ("stale" if pid else "stopped")
        drop = self.cfg.imports.folder("drop", self.var)
        return ProcessStatus(IMPORT_WATCH, "worker", state, pid if alive else None, f"drop {drop}", None,
                             str(self.log_file(IMPORT_WATCH)))  # fmt: skip

    def import_watch_up(self) -> None:
        """Start `nmdose import watch` in the background (pid file, log), unless it already runs."""
        if self.import_watch_status().state == "running":
            return
        self._service_up(IMPORT_WATCH, ["import", "watch"])

    def import_watch_down(self, timeout_s: float = 30) -> bool:
        """Stop the watcher this stack started (SIGTERM: it ends the folder it imports; SIGKILL after
        `timeout_s` is safe too, docs/import.md "Lossless")."""
        return self._service_down(IMPORT_WATCH, self._is_our_import_watch, timeout_s)

    def orthanc_up(self, name: str) -> None:
        node = self.cfg.nodes[name]
        log = self.log_file(name)
        pid = self._read_pid(name)
        base = self.orthanc_dir(name)
        if pid and _pid_alive(pid) and str(base) in _cmdline(pid):
            return
        for kind, port in (("DICOM", node.port), ("HTTP", node.http_port)):
            if port and port_in_use(node.host, port):
                raise StackError(
                    f"{name}: {kind} port {node.host}:{port} is busy (another process?); change it in "
                    f"{self.cfg.config_dir / 'dicom_network_entities.yaml'}; log: {log}"
                )
        if not node.http_port:
            raise StackError(f"{name}: a local node needs http_port in dicom_network_entities.yaml")
        orthanc = find_orthanc()
        conf_path = self.write_orthanc_config(name)
        with _open_private_log(log) as out:
            out.write(
                f"\n===== nmdose stack: starting {name} {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
            )
            out.flush()
            proc = subprocess.Popen(
                [orthanc, str(conf_path)],
                cwd=base,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.orthanc_env(name),
                start_new_session=True,
                umask=UMASK,
            )
        _write_private(self.pid_file(name), f"{proc.pid}\n")
        _children[proc.pid] = proc
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file(name).unlink(missing_ok=True)
                raise StackError(
                    f"{name}: Orthanc exited with code {proc.returncode} at start (ports {node.port}/"
                    f"{node.http_port}); log: {log}\n{_tail(log)}"
                )
            try:
                # any answer means it is up (in keycloak mode the plugin's gate answers 403 without credential)
                if requests.get(f"{node.http_url}/system", timeout=2).status_code in (200, 401, 403):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.orthanc_down(name)
        raise StackError(
            f"{name}: Orthanc did not answer on {node.http_url} within 90 s; log: {log}\n{_tail(log)}"
        )

    def orthanc_env(self, name: str) -> dict[str, str]:
        """The node's environment: TCP_NODELAY, and for the research PACS the index role's password (the generated
        configuration names it as ${NMDOSE_ORTHANC_DB_PASSWORD}) and libpq's TLS settings; the other nodes get
        no database password."""
        env = dicom_env()
        pg = self.cfg.postgresql
        if name != "researchPACS":  # the other nodes use no database: no password in their environment
            for secret in pg.ROLE_SECRETS.values():
                env.pop(secret, None)
        else:
            env[ORTHANC_DB_PASSWORD_ENV] = self.cfg.secrets.get(pg.ROLE_SECRETS["orthanc"])
            if pg.sslmode:
                env["PGSSLMODE"] = pg.sslmode
            if pg.sslrootcert:
                env["PGSSLROOTCERT"] = pg.sslrootcert
        return env

    def write_orthanc_config(self, name: str) -> Path:
        """Generate var/orthanc/<name>/orthanc.json (0600; no password in it: see `orthanc_env`)."""
        base = self.orthanc_dir(name)
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        for sub in ("storage", "index"):
            (base / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(base / sub, 0o700)
        conf_path = base / "orthanc.json"
        if self._is_local_dose_node(name):
            self._prepare_dose_spool(name)
        _write_private(conf_path, json.dumps(self.orthanc_config(name), indent=2))
        return conf_path

    def orthanc_exec(self, name: str) -> None:
        """Replace this process by the node's Orthanc (containers: the same config as the native stack)."""
        conf_path = self.write_orthanc_config(name)
        orthanc = find_orthanc()
        os.chdir(self.orthanc_dir(name))
        env = self.orthanc_env(name)
        os.umask(UMASK)
        os.execve(orthanc, [orthanc, str(conf_path)], env)

    def orthanc_down(self, name: str, *, sig: int = signal.SIGTERM, timeout_s: float = 60) -> bool:
        """Stop the Orthanc this stack started for `name` (pid file + command line check)."""
        pid = self._read_pid(name)
        if not pid:
            return False
        stopped = False
        if _pid_alive(pid) and str(self.orthanc_dir(name)) in _cmdline(pid):
            os.kill(pid, sig)
            deadline = time.monotonic() + timeout_s
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _pid_alive(pid):
                    time.sleep(0.05)
            stopped = True
        child = _children.pop(pid, None)
        if child is not None:
            child.wait()
        self.pid_file(name).unlink(missing_ok=True)
        return stopped


def _site_packages() -> list[str]:
    """This interpreter's site-packages, for the Python embedded in Orthanc (it has none of the venv's)."""
    import site

    paths = [p for p in site.getsitepackages() if Path(p).is_dir()]
    return paths + [str(REPO_ROOT / "orthanc_plugin")]


# ----- CLI
def register(sub) -> None:
    p = sub.add_parser("stack", help="local embedded stack: PostgreSQL + Orthanc nodes under var/")
    ssub = p.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    up = ssub.add_parser("up", help="initialise and start the local servers")
    up.add_argument("--json", action="store_true")
    up.add_argument("--no-plugin", action="store_true", help="research PACS without the nmdose plugin")
    up.set_defaults(func=cmd_up)
    down = ssub.add_parser("down", help="stop the servers this stack started (safe to repeat)")
    down.set_defaults(func=cmd_down)
    st = ssub.add_parser("status", help="which local servers (and the dose worker) run")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    run = ssub.add_parser("run", help="run one Orthanc node in the foreground (containers)")
    run.add_argument("node")
    run.add_argument("--no-plugin", action="store_true")
    run.set_defaults(func=cmd_run)


def _print_status(rows: list[ProcessStatus], as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return
    print(f"{'node':16} {'state':8} {'pid':>7}  {'address':28} {'http':24} log")
    for r in rows:
        print(f"{r.node:16} {r.state:8} {r.pid or '-':>7}  {r.address:28} {r.http or '-':24} {r.log}")


def cmd_up(args, ctx) -> int:
    cfg = ctx.config
    stack = Stack(cfg, research_plugin=not args.no_plugin)
    rows = stack.up()
    _print_status(rows, args.json)
    return 0 if all(r.state == "running" for r in rows) else 1


def cmd_down(args, ctx) -> int:
    stopped = Stack(ctx.config).down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def cmd_run(args, ctx) -> int:
    cfg = ctx.config
    if args.node not in cfg.nodes or not cfg.nodes[args.node].http_port:
        raise StackError(
            f"{args.node}: not an Orthanc node of {cfg.config_dir / 'dicom_network_entities.yaml'}"
        )
    Stack(cfg, research_plugin=not args.no_plugin).orthanc_exec(args.node)
    return 0  # not reached


def cmd_status(args, ctx) -> int:
    rows = Stack(ctx.config).status()
    _print_status(rows, args.json)
    return 0 if all(r.state == "running" for r in rows) else 3
