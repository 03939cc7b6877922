"""The pages' routes as tables: each route module (web/routes_research.py, routes_dose.py, routes_pages.py)
lists its routes as :class:`RouteSpec` rows of small handlers `handler(request, ctx)`; web/pages.py registers the
tables in a loop. Everything the router needs to know of a route (permission, query parameters, description for
the OpenAPI document) is on its row; a handler reads `request.args` (the query, validated by the router)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from nmdose.web.params import Param
from nmdose.web.router import Request, Response

HTML = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Context:
    """What the handlers share: the configuration, `db()` (a database connection closed at the end of a `with`)
    and the login settings of the pages (keycloak mode)."""

    cfg: Any
    db: Callable[[], AbstractContextManager[Any]]
    oidc: dict[str, str] | None = None

    def levels(self) -> list[Any]:
        """The configured reference levels."""
        return list(self.cfg.reference_levels.levels)


Handler = Callable[[Request, Context], Response]


@dataclass(frozen=True)
class RouteSpec:
    """One route: the arguments of :meth:`nmdose.web.router.Router.add`, its handler taking the context too."""

    method: str
    pattern: str
    handler: Handler
    permission: str
    summary: str
    query: Mapping[str, Param] | None = None
    body: Mapping[str, Any] | None = None  # JSON schema of the request body (router.check_json)
    export_permission: str | None = None
    answers: Mapping[int, str] = field(default_factory=dict)
    content_type: str = "application/json"


def register(router, specs: Iterable[RouteSpec], ctx: Context) -> None:
    """Add every route of `specs` to `router`, its handler bound to `ctx`."""
    for spec in specs:
        router.add(
            spec.method,
            spec.pattern,
            partial(spec.handler, ctx=ctx),
            permission=spec.permission,
            export_permission=spec.export_permission,
            query=spec.query,
            body=spec.body,
            summary=spec.summary,
            answers=spec.answers,
            content_type=spec.content_type,
        )
