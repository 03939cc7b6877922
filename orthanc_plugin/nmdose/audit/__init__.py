"""The audit trail (issue 13 item 2, docs/audit.md): one append-only `audit.event` row per call of a non-public
web route (written by a router observer through a writer thread), per state-changing command-line action and per
automatic action of the plugin, with a retention purge and the privacy officer's API and page.

- :mod:`nmdose.audit.event`: the row, and how a request/response becomes one (rows, format, study UIDs, client);
- :mod:`nmdose.audit.store`: SQL (insert, query with filters, purge);
- :mod:`nmdose.audit.writer`: the queue + thread that writes web rows off the request path;
- :mod:`nmdose.audit.actions`: `record_action()` for the command line and the plugin's automatic actions;
- :mod:`nmdose.audit.routes`: the stage module (observer install, `/api/audit`, `/ui/audit`, daily purge);
- :mod:`nmdose.audit.cli`: `nmdose audit purge|list`;
- :mod:`nmdose.audit.context`: the client address Orthanc's HTTP filter saw, for the observer on the same thread.
"""

from nmdose.audit.actions import record_action

__all__ = ["record_action"]
