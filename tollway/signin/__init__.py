"""Sign-in for developers: Tollway as the OAuth 2.0 device-flow server Claude Code's `/login`
talks to, with people signed in through the organisation's OIDC identity provider.

One noun per module: `codes` (secrets and user codes), `limits` (per-IP rate windows), `oidc`
(the IdP client), `provisioning` (users and groups from the IdP), `tokens` (the discovery,
device and token endpoints), `pages` (the browser verification page), `extras` (managed
settings and the OTLP sinks), `routes` (wiring them into the app).
"""
