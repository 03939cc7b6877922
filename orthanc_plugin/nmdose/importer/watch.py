"""`nmdose import watch`: inotify on the drop folder (and every folder under it), a folder imported once nothing
in it changed for ``debounce_s``.

Each top-level folder of the drop folder is one patient. Any event under it (a file created, written, closed,
moved in or out, a folder created) restarts its quiet time; a folder created in it gets its own watch. At start
(after a restart, a crash) the folders already there are imported once they have been quiet long enough, judged
by their newest ctime. The import itself checks the ctime again (an event lost to a queue overflow cannot start
an import too early) and a folder left in place (the research PACS down, files added during the import) waits
one more debounce. Imports run one folder at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from inotify_simple import INotify
from inotify_simple import flags as F

from nmdose.errors import NmdoseError
from nmdose.importer.folder import (
    ImportBusy,
    ensure_folders,
    folder_hash,
    import_folder,
    last_change,
    paths,
    pending_folders,
    scrub,
)

if TYPE_CHECKING:
    from nmdose.config import Config

log = logging.getLogger("nmdose.importer.watch")
WATCH_FLAGS = (F.CREATE | F.CLOSE_WRITE | F.MODIFY | F.MOVED_TO | F.MOVED_FROM | F.DELETE | F.ATTRIB
               | F.DELETE_SELF | F.MOVE_SELF)  # fmt: skip
RESCAN_S = 60.0  # at the latest: a look at the drop folder itself, whatever inotify said


class Watcher:
    def __init__(self, cfg: Config, *, debounce_s: float | None = None):
        self.cfg = cfg
        self.p = paths(cfg)
        ensure_folders(self.p)
        self.debounce_s = cfg.imports.debounce_s if debounce_s is None else debounce_s
        self.ino = INotify()
        self.wds: dict[int, Path] = {}
        self.activity: dict[str, float] = {}  # top-level folder name -> monotonic time of its last change
        self.imported: list = []  # ImportResult of each import (tests, --once)
        self._watch(self.p.drop)
        self.rescan()

    def _watch(self, folder: Path) -> None:
        for root, dirs, _files in os.walk(folder):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
            try:
                wd = self.ino.add_watch(root, WATCH_FLAGS | F.ONLYDIR | F.DONT_FOLLOW)
            except OSError as exc:  # gone meanwhile, or out of watches (fs.inotify.max_user_watches)
                log.warning("cannot watch a folder (%s); the periodic rescan covers it", exc.strerror)
                continue
            self.wds[wd] = Path(root)

    def _unwatch(self, folder: Path) -> None:
        for wd, path in list(self.wds.items()):
            if path == folder or folder in path.parents:
                self.wds.pop(wd, None)
                with contextlib.suppress(OSError):
                    self.ino.rm_watch(wd)

    def rescan(self) -> None:
        """Folders in the drop folder that no event named yet (start, queue overflow): their age by ctime."""
        now_m, now_w = time.monotonic(), time.time()
        for folder in pending_folders(self.p):
            if folder.name in self.activity:
                continue
            quiet = max(0.0, now_w - last_change(folder))
            self.activity[folder.name] = now_m - quiet
            if not any(path == folder for path in self.wds.values()):
                self._watch(folder)

    def _top(self, path: Path) -> str | None:
        try:
            rel = path.relative_to(self.p.drop)
        except ValueError:
            return None
        return rel.parts[0] if rel.parts else None

    def handle_events(self, timeout_ms: int) -> None:
        for ev in self.ino.read(timeout=timeout_ms, read_delay=50):
            if ev.mask & F.Q_OVERFLOW:
                log.warning("inotify queue overflow: rescanning the drop folder")
                for name in list(self.activity):
                    self.activity[name] = time.monotonic()
                self.rescan()
                continue
            base = self.wds.get(ev.wd)
            if ev.mask & F.IGNORED:
                self.wds.pop(ev.wd, None)
                continue
            if base is None:
                continue
            path = base / ev.name if ev.name else base
            top = self._top(path)
            if not top or top.startswith("."):
                continue
            self.activity[top] = time.monotonic()
            if ev.mask & F.ISDIR and ev.mask & (F.CREATE | F.MOVED_TO) and path.is_dir():
                self._watch(path)

    def due(self) -> list[str]:
        now = time.monotonic()
        return sorted((n for n, t in self.activity.items() if now - t >= self.debounce_s),
                      key=lambda n: self.activity[n])  # fmt: skip

    def next_timeout_ms(self) -> int:
        if not self.activity:
            return int(RESCAN_S * 1000)
        now = time.monotonic()
        wait = min(self.debounce_s - (now - t) for t in self.activity.values())
        return int(max(0.0, min(wait, RESCAN_S)) * 1000) + 1

    def import_due(self) -> None:
        for name in self.due():
            folder = self.p.drop / name
            if not folder.is_dir():
                self.activity.pop(name, None)
                continue
            try:
                result = import_folder(self.cfg, folder, trigger="watch", stable_s=self.debounce_s)
            except ImportBusy:
                self.activity[name] = time.monotonic()
                continue
            except NmdoseError as exc:
                log.error(
                    "a folder was not imported: %s", scrub(str(exc), folder, folder_hash(self.cfg, name))
                )
                self.activity[name] = time.monotonic()
                continue
            except Exception as exc:  # noqa: BLE001 - the service goes on with the other folders; this one waits
                # no traceback: its paths would name the patient
                log.error("a folder was not imported (it stays in the drop folder): %s", type(exc).__name__)
                self.activity[name] = time.monotonic()
                continue
            self.imported.append(result)
            log.info("%s", result.summary())
            if result.outcome == "retry":
                self.activity[name] = time.monotonic()
            else:
                self.activity.pop(name, None)
                self._unwatch(folder)

    def run(self, stop: threading.Event | None = None, *, once: bool = False) -> None:
        """Watch until `stop` is set (or, with `once`, until the folders there at start are handled)."""
        stop = stop or threading.Event()
        log.info("watching %s (debounce %g s)", self.p.drop, self.debounce_s)
        last_rescan = time.monotonic()
        while not stop.is_set():
            self.handle_events(min(self.next_timeout_ms(), 1000))
            if time.monotonic() - last_rescan >= RESCAN_S:
                self.rescan()
                last_rescan = time.monotonic()
            self.import_due()
            if once and not self.activity:
                return

    def close(self) -> None:
        self.ino.close()
