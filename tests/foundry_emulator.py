"""Microsoft Foundry's Anthropic endpoint on 127.0.0.1: the Anthropic Messages API under
`/anthropic/v1/...` of a resource, authenticated by an `api-key` (or `x-api-key`) header or a
Microsoft Entra ID bearer token that the linked `EntraEmulator` issued and that has not expired;
`anthropic-beta` values Foundry does not serve are refused with Anthropic's 400, as the API
behind it does. Answers come from the shared brain (tests/cloud_brain.py) in Anthropic's exact
JSON and SSE, with an `apim-request-id` header as Azure's API management adds.

`EntraEmulator` issued and that has not expired); `anthropic-beta` values Foundry does not serve are refused with
Anthropic's 400, as the API behind it does. Answers come from the shared brain
(tests/cloud_brain.py) in Anthropic's exact JSON and SSE, with an `apim-request-id` header as
Azure's API management adds.

`EntraEmulator` is Microsoft Entra ID's token endpoint (`POST /{tenant}/oauth2/v2.0/token`) on
127.0.0.1 over TLS (azure-identity refuses an authority that is not https), with a certificate
made here by `cryptography` for 127.0.0.1 (`tls_files`; the gateway trusts it through the
config's `entra.ca_file`). It checks the client-credentials grant as Entra does — the tenant, the
client id, the scope, and either the client secret or (workload identity) a `client_assertion`
that is the federated token the test wrote — and answers with AADSTS errors otherwise. Tokens
live `token_lifetime` seconds; each issue is recorded (`issued`: token, issued at, expires at).
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cloud_brain import Brain, request_id
from tests.loopback import LoopbackServer

UNSERVED_BETAS = frozenset({"fast-mode-2026-02-01", "output-128k-2025-02-19", "token-efficient-tools-2025-02-19",
                            "advisor-tool-2026-03-01", "oauth-2025-04-20", "fine-grained-tool-streaming-2025-05-14"})


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return dict(orjson.loads(self.body))


def error(status: int, error_type: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "error": {"type": error_type, "message": message}}, status=status,
                             headers={"apim-request-id": request_id("foundry")})


def tls_files(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files of a self-signed certificate for 127.0.0.1; the certificate is
    also the CA file a client trusts it with."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tollway-test-entra")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "entra-cert.pem", directory / "entra-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


SCOPE = "https://cognitiveservices.azure.com/.default"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass
class Issued:
    token: str
    at: float
    expires: float


class EntraEmulator(LoopbackServer):
    """Entra ID's v2.0 token endpoint for one tenant and one app registration (module doc)."""

    thread_name = "entra-emulator"

    def __init__(self, directory: Path, tenant: str, client_id: str, client_secret: str | None = None,
                 federated_token: str | None = None, token_lifetime: int = 3600) -> None:
        super().__init__()
        self.ca_file, self._key_file = tls_files(directory)
        self.tenant, self.client_id = tenant, client_id
        self.client_secret, self.federated_token = client_secret, federated_token
        self.token_lifetime = token_lifetime
        self.issued: list[Issued] = []
        self.refused = 0
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def authority(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    def valid(self, token: str) -> bool:
        now = time.time()
        with self._lock:
            return any(i.token == token and now < i.expires for i in self.issued)

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, self._key_file)
        await self._serve_app(app, context)

    def _refuse(self, status: int, error: str, description: str) -> web.Response:
        self.refused += 1
        return web.json_response({"error": error, "error_description": description, "error_codes": [7000215]},
                                 status=status)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.match_info["tenant"] != self.tenant:
            return self._refuse(400, "invalid_request", f"AADSTS90002: Tenant '{request.match_info['tenant']}' not "
                                "found.")
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            return self._refuse(400, "invalid_scope", f"AADSTS70011: The provided request must include a 'scope' "
                                f"input parameter, this one was {form.get('scope')!r}.")
        if form.get("client_id") != self.client_id:
            return self._refuse(400, "unauthorized_client", "AADSTS700016: Application not found in the directory.")
        secret_ok = self.client_secret is not None and form.get("client_secret") == self.client_secret
        assertion_ok = (self.federated_token is not None and form.get("client_assertion_type") == JWT_BEARER
                        and form.get("client_assertion") == self.federated_token)
        if not (secret_ok or assertion_ok):
            return self._refuse(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        now = time.time()
        token = f"entra-{next(self._counter)}-{int(now * 1000)}"
        with self._lock:
            self.issued.append(Issued(token, now, now + self.token_lifetime))
        return web.json_response({"token_type": "Bearer", "expires_in": self.token_lifetime,
                                  "ext_expires_in": self.token_lifetime, "access_token": token})


class FoundryEmulator(LoopbackServer):
    thread_name = "foundry-emulator"

    def __init__(self, api_key: str | None = None, entra: EntraEmulator | None = None) -> None:
        super().__init__()
        self.api_key = api_key
        self.entra = entra
        self.received: list[Seen] = []
        self._lock = threading.Lock()
        self._brain = Brain()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/anthropic"

    def reset(self) -> None:
        with self._lock:
            self.received.clear()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_post("/anthropic/v1/messages", self._handle)
        app.router.add_post("/anthropic/v1/messages/count_tokens", self._handle)
        await self._serve_app(app, handler_cancellation=True, shutdown_timeout=0.5)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            self.received.append(Seen(request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        key = request.headers.get("api-key") or request.headers.get("x-api-key")
        bearer = request.headers.get("Authorization", "")
        token = bearer[7:] if bearer.startswith("Bearer ") else None
        entra_ok = token is not None and self.entra is not None and self.entra.valid(token)
        if not ((self.api_key and key == self.api_key) or entra_ok):
            return error(401, "authentication_error", "Access denied due to invalid subscription key or wrong API "
                         "endpoint.")
        for beta in request.headers.get("anthropic-beta", "").split(","):
            if beta.strip() in UNSERVED_BETAS:
                return error(400, "invalid_request_error", f"Unexpected value(s) `{beta.strip()}` for the "
                             "`anthropic-beta` header.")
        payload = orjson.loads(body)
        rid = {"apim-request-id": request_id("foundry")}
        if request.path.endswith("/count_tokens"):
            return web.json_response({"input_tokens": await self._brain.count(payload)}, headers=rid)
        model = payload.pop("model")
        if not payload.get("stream"):
            return web.json_response(await self._brain.message(payload, model), headers=rid)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8", **rid})
        await resp.prepare(request)
        for event in await self._brain.events(payload, model):
            await resp.write(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n")
        await resp.write_eof()
        return resp
