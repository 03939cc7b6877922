import os

import pytest

# Tests must never read the developer's own .env modes or secrets backend.
for _k in list(os.environ):
    if _k.startswith(("NMDOSE_", "VAULT_")) or _k == "ENABLE_SIMULATION":
        del os.environ[_k]


@pytest.fixture(scope="session")
def stack():
    """One local stack (PostgreSQL + simulation, research with plugin, dose stand-in) for the session."""
    from tests.support import RunningStack

    running = RunningStack()
    yield running
    running.close()
