"""AWS STS on 127.0.0.1: AssumeRole and AssumeRoleWithWebIdentity, as botocore's credential
providers call them (the Query protocol, XML answers), for the Bedrock credential tests.

botocore reaches it through its endpoint configuration (`AWS_ENDPOINT_URL_STS`), so the
credential chain under test is botocore's own: the `role_arn` + `source_profile` profile
(AssumeRole, its request SigV4-signed with the source credentials and verified here with
botocore's signer, service `sts`) and the EKS IRSA variables `AWS_ROLE_ARN` +
`AWS_WEB_IDENTITY_TOKEN_FILE` (AssumeRoleWithWebIdentity, unsigned; the token must be the one
the test wrote to the file). Each grant mints new temporary credentials (`ASIATEST…`), registers
them with the Bedrock emulator (secret, session token and expiry: SigV4 verifies there, and an
expired key is refused with ExpiredTokenException) and answers
with `Expiration` = now + `lifetime` seconds (`lifetimes` per role). Roles in `denied` get AWS's AccessDenied; a wrong
web identity token gets InvalidIdentityToken. `grants` records every grant (role, key, expiry).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from aiohttp import web

from tests.bedrock_emulator import BedrockEmulator, derived_secret, sigv4_problem
from tests.cloud_brain import request_id
from tests.loopback import LoopbackServer

NS = "https://sts.amazonaws.com/doc/2011-06-15/"


@dataclass
class Grant:
    action: str
    role: str
    access_key_id: str
    issued: float
    expires: float


class StsEmulator(LoopbackServer):
    thread_name = "sts-emulator"

    def __init__(self, bedrock: BedrockEmulator, source: dict[str, str], web_identity_token: str,
                 lifetime: int = 3600, denied: tuple[str, ...] = (), lifetimes: dict[str, int] | None = None) -> None:
        super().__init__()
        self.bedrock = bedrock
        self.source = dict(source)  # access key id -> secret of the identities that may call AssumeRole
        self.web_identity_token = web_identity_token
        self.lifetime = lifetime
        self.lifetimes = dict(lifetimes or {})  # role -> its own lifetime
        self.denied = set(denied)
        self.grants: list[Grant] = []
        self.refusals: list[str] = []  # the roles refused, in order
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def grants_for(self, role: str) -> list[Grant]:
        with self._lock:
            return [g for g in self.grants if g.role == role]

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_post("/", self._handle)
        await self._serve_app(app)

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        body = (f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
                f"<Message>{message}</Message></Error><RequestId>{request_id('sts')}</RequestId></ErrorResponse>")
        return web.Response(text=body, status=status, content_type="text/xml")

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        form = dict(parse_qsl(body.decode()))
        action, role = form.get("Action", ""), form.get("RoleArn", "")
        if action == "AssumeRole":
            problem = sigv4_problem(request, body, lambda akid: (self.source[akid], None) if akid in self.source
                                    else None, "sts", "us-east-1")
            if problem is not None:
                return self._error(403, *problem)
        elif action == "AssumeRoleWithWebIdentity":
            if form.get("WebIdentityToken") != self.web_identity_token:
                with self._lock:
                    self.refusals.append(role)
                return self._error(400, "InvalidIdentityToken", "Couldn't retrieve verification key from your "
                                   "identity provider")
        else:
            return self._error(400, "InvalidAction", f"Could not find operation {action}")
        if role in self.denied:
            with self._lock:
                self.refusals.append(role)
            return self._error(403, "AccessDenied", f"User is not authorized to perform: sts:{action} on "
                               f"resource: {role}")
        now = time.time()
        lifetime = self.lifetimes.get(role, self.lifetime)
        akid = f"ASIATEST{next(self._counter):08d}"
        with self._lock:
            self.bedrock.credentials[akid] = (derived_secret(akid), "session-" + akid)
            self.bedrock.expires[akid] = now + lifetime
            self.grants.append(Grant(action, role, akid, now, now + lifetime))
        expires = datetime.fromtimestamp(now + lifetime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        session = form.get("RoleSessionName", "tollway")
        extra = ("<SubjectFromWebIdentityToken>system:serviceaccount:tollway:gateway</SubjectFromWebIdentityToken>"
                 "<Audience>sts.amazonaws.com</Audience><Provider>oidc.eks.test</Provider>"
                 if action == "AssumeRoleWithWebIdentity" else "")
        xml = (f'<{action}Response xmlns="{NS}"><{action}Result>{extra}<AssumedRoleUser>'
               f"<AssumedRoleId>AROATEST:{session}</AssumedRoleId><Arn>{role.replace(':role/', ':assumed-role/')}"
               f"/{session}</Arn></AssumedRoleUser><Credentials><AccessKeyId>{akid}</AccessKeyId>"
               f"<SecretAccessKey>{derived_secret(akid)}</SecretAccessKey><SessionToken>session-{akid}</SessionToken>"
               f"<Expiration>{expires}</Expiration></Credentials></{action}Result><ResponseMetadata>"
               f"<RequestId>{request_id('sts')}</RequestId></ResponseMetadata></{action}Response>")
        return web.Response(text=xml, content_type="text/xml")
