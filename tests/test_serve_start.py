"""Starting the gateway as a new user does: `make run PORT=… CONFIG=…`, "listening" printed only
once the port is bound, a clear exit when it cannot be, and the admin API's docs page working with
no internet (assets from the installed package) and the admin-key scheme declared."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.conftest import BIN, Gateway, free_port, run_cli, start_gateway

ROOT = Path(__file__).resolve().parent.parent


def test_listening_is_printed_only_after_the_port_is_bound(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "TOLLWAY_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "Tollway listening" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "tollway exited before listening"
        assert f"Tollway listening on http://127.0.0.1:{port}" in line
        # Bound when it says so: the first connection attempt is answered, no retry.
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_a_port_in_use_is_a_clear_exit_without_listening(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "TOLLWAY_DATA_DIR": str(tmp_path)}
        proc = subprocess.run([str(BIN), "serve", "--port", str(port)], cwd=tmp_path, capture_output=True, text=True,
                              env=env, timeout=60)
    assert proc.returncode == 1
    assert "listening" not in proc.stdout
    assert "address already in use" in proc.stderr.lower()
    assert f"Tollway could not start on http://127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_make_run_takes_port_and_config(tmp_path: Path) -> None:
    config = tmp_path / "my config.yaml"  # a space in the path, as people have
    config.write_text(yaml.safe_dump({"models": [{"id": "from-make", "upstream": {"provider": "mock"}}]}))
    key = json.loads(run_cli("keys", "create", "--name", "k", "--json", config=config).stdout)["key"]
    port = free_port()
    # -o: the venv is already built (this test runs in it); make must not reinstall it.
    proc = subprocess.Popen(["make", "-s", "-o", ".venv/.runtime", "run", f"PORT={port}", f"CONFIG={config}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline, models = time.monotonic() + 30, None
        while time.monotonic() < deadline and models is None:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"x-api-key": key}, timeout=2)
                models = [m["id"] for m in resp.json()["data"]]
            except httpx.HTTPError:
                time.sleep(0.2)
        assert models == ["from-make"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=15)


def test_the_admin_docs_page_works_offline_with_the_admin_key_scheme(tmp_path: Path) -> None:
    gw: Gateway = start_gateway(tmp_path, {"models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}]})
    try:
        page = httpx.get(gw.base_url + "/admin/v1/docs", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
        assert assets and all(a.startswith("/admin/v1/") for a in assets), assets  # nothing from a CDN
        assert "/admin/v1/openapi.json" in page.text
        for asset in assets:
            got = httpx.get(gw.base_url + asset, timeout=10)
            assert got.status_code == 200 and got.content, asset
            if asset.endswith(".js"):
                assert b"SwaggerUIBundle" in got.content
        spec = httpx.get(gw.base_url + "/admin/v1/openapi.json", timeout=10).json()
        schemes = spec["components"]["securitySchemes"]
        assert schemes["AdminKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key",
                                       "description": "An admin key (`tollway keys create --admin`)."}
        assert schemes["AdminBearer"]["scheme"] == "bearer"
        users = spec["paths"]["/users"]["get"]
        assert {"AdminKey": []} in users["security"] and {"AdminBearer": []} in users["security"]
    finally:
        gw.stop()
