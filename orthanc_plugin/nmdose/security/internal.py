"""nmdose's internal credential for the research PACS's REST API (keycloak auth mode).

The plugin's gate (nmdose.web.gate) admits Orthanc's own API only to admins and to this credential: a random
secret from the secret store (Vault in prod; generated once into var/secrets.env, mode 0600, locally), which
the plugin's loopback calls and the `nmdose` command line send as the ``X-Nmdose-Internal`` header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nmdose.config import Config

INTERNAL_HEADER = "X-Nmdose-Internal"
INTERNAL_SECRET = "NMDOSE_ORTHANC_INTERNAL_TOKEN"


def internal_secret(cfg: Config) -> str:
    store = cfg.secrets
    ensure = getattr(store, "ensure", None)
    return ensure(INTERNAL_SECRET) if ensure else store.get(INTERNAL_SECRET)


def internal_headers(cfg: Config) -> dict[str, str]:
    """Headers for a call of ours to the research PACS's REST API (none needed in dev auth mode)."""
    return {INTERNAL_HEADER: internal_secret(cfg)} if cfg.auth_mode == "keycloak" else {}
