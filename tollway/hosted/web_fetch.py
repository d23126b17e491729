"""`tollway_web_fetch`: GET a page from an allow-listed host and return its text.

Only `http`/`https` URLs whose host matches `hosted_tools.web_fetch.allow_hosts` are fetched;
anything else is a tool error and no connection is made. The body is read up to `max_bytes` and
decoded (the response's charset, else UTF-8 with replacement).

Redirect policy (issue 17 item 8). Unlike a provider call, a page fetch may legitimately be
redirected (http -> https, a moved page), so redirects are followed, but by hand (up to 5), each
hop checked against the allow-list again, and never with a credential: this tool sends none of
its own (no API key, no Authorization header), a URL carrying a user name or password is
refused (aiohttp would turn it into Basic auth and re-send it on every hop), and the session
keeps no cookies (the registry gives it a `DummyCookieJar`), so nothing one answer set can ride
along to the next hop or to another caller's fetch.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from tollway.config import WebFetchConfig
from tollway.governance.access import matches
from tollway.hosted.tool import PREFIX, HostedTool, Outcome

NAME = f"{PREFIX}web_fetch"
MAX_REDIRECTS = 5
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"url": {"type": "string", "description": "an http(s) URL on an allowed host"}},
    "required": ["url"],
}


class WebFetch:
    def __init__(self, cfg: WebFetchConfig, http: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self.http = http
        self.hosts = [h.lower() for h in cfg.allow_hosts]

    def tool(self) -> HostedTool:
        description = ("Fetch a web page (HTTP GET) and return its text. Allowed hosts: "
                       + ", ".join(self.cfg.allow_hosts) + ".")
        return HostedTool(NAME, description, SCHEMA, "tollway", self.run)

    def refusal(self, url: str) -> str | None:
        """Why URL may not be fetched, or None when it may."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return f"not a valid URL: {url[:200]}"
        if parts.scheme not in ("http", "https") or not host:
            return f"only http and https URLs can be fetched, not {url[:200]}"
        if parts.username is not None or parts.password is not None:
            return "URLs with a user name or password are not fetched (no credential leaves the gateway)"
        if not matches(self.hosts, host):
            return f"the host {host} is not on this gateway's web_fetch allow-list"
        return None

    async def run(self, arguments: dict[str, Any]) -> Outcome:
        url = arguments.get("url")
        if not isinstance(url, str) or not url:
            return Outcome("the input needs a 'url' string", True)
        for _ in range(MAX_REDIRECTS + 1):
            refused = self.refusal(url)
            if refused is not None:
                return Outcome(refused, True)
            async with self.http.get(url, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "location" in resp.headers:
                    url = urljoin(url, resp.headers["location"])
                    continue
                data = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    data += chunk
                    if len(data) > self.cfg.max_bytes:
                        break
                truncated = len(data) > self.cfg.max_bytes
                text = bytes(data[: self.cfg.max_bytes]).decode(resp.charset or "utf-8", "replace")
                if truncated:
                    text += f"\n[truncated to {self.cfg.max_bytes} bytes]"
                if resp.status >= 400:
                    return Outcome(f"HTTP {resp.status} from {url[:200]}\n{text[:2000]}", True)
                return Outcome(text)
        return Outcome(f"more than {MAX_REDIRECTS} redirects", True)
