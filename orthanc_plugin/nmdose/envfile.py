"""`.env` files (``config/.env``, the generated ``var/secrets.env``): a leaf module, so that both the
configuration and the secret store read them without importing each other."""

from __future__ import annotations

import re
from pathlib import Path

from nmdose.errors import ConfigError


def read_env_file(path: Path) -> dict[str, str]:
    """A `.env` file: KEY=VALUE lines, `#` comments, optional quotes. Missing file: empty."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"{path}:{lineno}: expected KEY=VALUE, got {raw.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values
