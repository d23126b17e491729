"""The console's HTML responses and the headers every console page carries.

The content security policy allows scripts, styles and connections from this origin only, no
inline script or style at all: the pages hold no code, only links to the static files.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.responses import HTMLResponse

STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def index() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"), headers=HEADERS)


def message(title: str, text: str, status: int = 200) -> HTMLResponse:
    """A plain page with a link back to the console (sign-in failures, SSO not configured)."""
    doc = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
           "<link rel=stylesheet href=/console/static/console.css></head><body class=plain>"
           f"<h1>{html.escape(title)}</h1><p id=message>{html.escape(text)}</p>"
           "<p><a href=/console/>Back to the console</a></p></body></html>")
    return HTMLResponse(doc, status, headers=HEADERS)


def handoff(token: str, name: str, email: str | None, expires_in: int) -> HTMLResponse:
    """Hands a freshly minted access token to the console's script, which keeps it in
    sessionStorage and opens the console; the token never appears in a URL or a log."""
    meta = "".join(f"<meta name={k} content='{html.escape(str(v), quote=True)}'>" for k, v in (
        ("tollway-token", token), ("tollway-name", name), ("tollway-email", email or ""),
        ("tollway-expires-in", expires_in)))
    doc = ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Signing in…</title>"
           f"{meta}<link rel=stylesheet href=/console/static/console.css>"
           "<script src=/console/static/handoff.js defer></script></head>"
           "<body class=plain><p id=handoff>Signing in…</p></body></html>")
    return HTMLResponse(doc, headers=HEADERS)
