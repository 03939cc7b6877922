"""DCMTK command-line tools (echoscu, findscu, movescu, storescu), always with TCP_NODELAY=1."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from nmdose.errors import PacsError

DICOM_ENV = {"TCP_NODELAY": "1"}


def dicom_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for any process that speaks DICOM through DCMTK (these tools, storescu uploads, the
    Orthanc servers of the local stack)."""
    env = dict(os.environ)
    env.update(DICOM_ENV)
    if extra:
        env.update(extra)
    return env


@dataclass
class ToolResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_tool(tool: str, args: list[str], *, timeout_s: float = 120) -> ToolResult:
    path = shutil.which(tool)
    if not path:
        raise PacsError(f"DCMTK tool {tool} not found: run `make deps` (Debian package dcmtk)")
    argv = [path, *args]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout_s, env=dicom_env(), stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        return ToolResult(
            argv,
            -1,
            exc.stdout or "" if isinstance(exc.stdout, str) else "",
            f"{tool} timed out after {timeout_s} s",
            time.monotonic() - started,
        )
    return ToolResult(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def echoscu(
    calling_aet: str,
    called_aet: str,
    host: str,
    port: int,
    *,
    timeout_s: float = 10,
    tls_args: list[str] | None = None,
) -> ToolResult:
    t = str(max(1, int(timeout_s)))
    return run_tool(
        "echoscu",
        [
            "-aet",
            calling_aet,
            "-aec",
            called_aet,
            "-to",
            t,
            "-ta",
            t,
            "-td",
            t,
            *(tls_args or []),
            host,
            str(port),
        ],
        timeout_s=timeout_s + 5,
    )
