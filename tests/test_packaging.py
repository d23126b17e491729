"""The built wheel is a working Tollway: built from a copy of the sources (as `pip wheel` does for
a release), installed into a fresh virtual environment, its `tollway` command creates and migrates
a store, makes a key, serves, answers from the mock model and serves the offline docs assets.

What is tested is the wheel itself — code, Alembic migrations, package data, the entry point.
Its dependencies are not downloaded again: the fresh environment sees this test environment's
site-packages (the same pinned versions) through a .pth line placed *after* its own, and the test
checks that `tollway` is imported from the new environment, not from the repository.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import yaml

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def run(*cmd: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-4000:])
    return proc.stdout


def test_the_wheel_installs_into_a_fresh_venv_and_serves(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "tollway", src / "tollway", ignore=shutil.ignore_patterns("__pycache__"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", src)
    wheel = next((tmp_path / "dist").glob("tollway-*.whl"))

    venv = tmp_path / "venv"
    # Without a pip of its own (ensurepip costs ~5 s of CPU): this environment's pip installs into it.
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    py = venv / "bin" / "python"
    site = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).strip())
    run(sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-compile", wheel, cwd=tmp_path)
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    where = run(py, "-c", "import tollway, pathlib; print(pathlib.Path(tollway.__file__).parent)", cwd=tmp_path).strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not the repository's
    package = Path(where)
    assert (package / "store" / "migrations" / "env.py").exists()
    assert list((package / "store" / "migrations" / "versions").glob("0*.py"))
    assert (package / "py.typed").exists()
    assert {p.name for p in (package / "console" / "static").iterdir()} >= {"index.html", "app.js", "console.css"}
    tollway = venv / "bin" / "tollway"
    assert tollway.read_text().splitlines()[0] == f"#!{py}"  # the command runs the new environment

    work = tmp_path / "work"
    work.mkdir()
    config = work / "tollway.yaml"
    config.write_text(yaml.safe_dump({"models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}]}))
    key = json.loads(run(tollway, "keys", "create", "--name", "wheel", "--json", "--config", config, cwd=work))["key"]
    port = free_port()
    proc = subprocess.Popen([str(tollway), "serve", "--config", str(config), "--port", str(port)], cwd=work,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline, answer = time.monotonic() + 60, None
        while time.monotonic() < deadline and answer is None:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                answer = httpx.post(base + "/v1/messages", headers={"x-api-key": key}, timeout=10, json={
                    "model": "tollway-mock", "max_tokens": 32, "messages": [{"role": "user", "content": "wheel"}]})
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answer is not None and answer.status_code == 200, answer and answer.text
        assert answer.json()["content"][0]["text"].startswith("Hello from the Tollway mock model")
        css = httpx.get(base + "/admin/v1/docs/assets/swagger-ui.css", timeout=30)
        assert css.status_code == 200 and len(css.content) > 10_000
        console = httpx.get(base + "/console/static/api.js", timeout=30)  # the web console's files, from the wheel
        assert console.status_code == 200 and b"/admin/v1" in console.content
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert (work / "tollway.db").exists()  # migrated from the wheel's own migrations
