"""What an idle gateway keeps in memory: libraries for features it does not use stay unloaded.

FastAPI (the admin API, with the OpenTelemetry API it imports) and the MCP client (hosted
tools) are about 34 MB of a gateway's resident memory together; Alembic and Mako about 20 MB.
A fresh interpreter starts the app exactly as `tollway serve` does (create_app, then its
start-up) and reports what it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from tests.conftest import start_gateway

PROBE = """
import asyncio, json, sys
from tollway.config import load_settings
from tollway.app import create_app

app = create_app(load_settings(sys.argv[1]))

async def main():
    async with app.router.lifespan_context(app):
        print(json.dumps({m: m in sys.modules for m in sys.argv[2:]}))

asyncio.run(main())
"""


# Imported only by what uses them: the admin API, hosted MCP tools, tracing, the cloud providers'
# credentials (Vertex, Foundry's Entra ID), the console's templates.
LAZY = ("fastapi", "mcp", "opentelemetry", "google.auth", "azure.identity", "jinja2")


def loaded_after_start(config: dict[str, object], workdir: Path, modules: tuple[str, ...] = LAZY) -> dict[str, bool]:
    path = workdir / "tollway.yaml"
    path.write_text(yaml.safe_dump({**config, "store": {"url": f"sqlite:///{workdir}/tollway.db"}}))
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), *modules], capture_output=True, text=True,
                         timeout=60, cwd=workdir)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_an_idle_gateway_loads_no_library_for_a_feature_it_does_not_use(tmp_path: Path) -> None:
    assert loaded_after_start({}, tmp_path) == dict.fromkeys(LAZY, False)


def test_a_gateway_on_a_migrated_store_never_imports_alembic(tmp_path: Path) -> None:
    """Alembic (about 20 MB resident with Mako) is needed only to migrate: the first start on a new
    store loads it, a start on a store that is up to date does not."""
    assert loaded_after_start({}, tmp_path, ("alembic",)) == {"alembic": True}
    assert loaded_after_start({}, tmp_path, ("alembic",)) == {"alembic": False}


def test_the_admin_api_is_built_on_its_first_request(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, {"models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}]})
    try:
        admin_key = json.loads(gw.cli("keys", "create", "--name", "ops", "--admin", "--json").stdout)["key"]
        first = httpx.get(gw.base_url + "/admin/v1/keys", headers={"x-api-key": admin_key}, timeout=30)
        assert first.status_code == 200 and first.json()["object"] == "list"
        refused = httpx.get(gw.base_url + "/admin/v1/keys", headers={"x-api-key": gw.key}, timeout=10)
        assert refused.status_code in (401, 403)
    finally:
        gw.stop()
