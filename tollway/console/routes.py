"""The console's routes, mounted at /console by the app factory."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from tollway.config import Settings
from tollway.console import pages
from tollway.governance.audit import AuditLog
from tollway.governance.identity import KeyCache


class _StaticWithHeaders(StaticFiles):
    """The console's files, with the same security headers as its pages (and revalidation, so an
    upgraded gateway never runs yesterday's script against today's API)."""

    async def get_response(self, path: str, scope: dict) -> Response:  # type: ignore[override]
        resp = await super().get_response(path, scope)
        for k, v in pages.HEADERS.items():
            resp.headers.setdefault(k, v if k != "cache-control" else "no-cache")
        return resp


def console_routes(settings: Settings, keys: KeyCache, audit: AuditLog) -> list[BaseRoute]:
    """`/console` (redirected to `/console/`), the page, its static files, and the SSO routes."""
    async def home(_: Request) -> Response:
        return pages.index()

    async def bare(_: Request) -> Response:
        return RedirectResponse("/console/", 308)

    routes = [Route("/", home, methods=["GET"]),
              Mount("/static", app=_StaticWithHeaders(directory=str(pages.STATIC)), name="console-static")]
    if settings.signin.enabled and settings.signin.oidc is not None:
        from tollway.console.sso import ConsoleSignin
        from tollway.signin.context import build_context

        sso = ConsoleSignin(build_context(settings.signin, keys, audit), audit)
        routes += [Route("/login", sso.login, methods=["GET"]), Route("/callback", sso.callback, methods=["GET"])]
    else:
        async def no_sso(_: Request) -> Response:
            return pages.message("Single sign-on is off", "This gateway has no identity provider configured "
                                 "(signin.enabled); sign in with an admin key.", 404)

        routes += [Route("/login", no_sso, methods=["GET"]), Route("/callback", no_sso, methods=["GET"])]
    return [Route("/console", bare, methods=["GET"]), Mount("/console", routes=routes)]
