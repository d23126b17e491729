"""The things bench/compare.py measures, and how each is started, configured and addressed.

Every target is reached the same way, `POST /v1/messages` with an Anthropic Messages body, so
every one of them carries the same load: Tollway natively, LiteLLM through its Anthropic
`/v1/messages` endpoint (forwarded to an `anthropic/` model with a custom api_base), Portkey
through its `/v1/messages` route (provider and host given in `x-portkey-*` headers). What differs
per target is only the port, a few headers and the model name, held in a `Route`.

Three upstream emulators (bench/upstream.py) serve every target:
* fast: answers at once (every 0 ms-upstream figure);
* slow: waits 20 ms before answering, like a model (the most req/s under a p99 limit);
* trickle: streams its events slowly, so hundreds of streams stay open at once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from run import (
    ANTHROPIC_VERSION,
    HOST,
    PROMPT,
    UPSTREAM_KEY,
    Processes,
    free_port,
    http_ok,
    port_open,
    tail,
    tollway_bin,
    wait_for,
)

BENCH_DIR = Path(__file__).resolve().parent.parent
PEERS_DIR = BENCH_DIR / "peers"
ENVS_DIR = BENCH_DIR / "envs"
KINDS = ("fast", "slow", "trickle")
MODELS = {"fast": "bench-model", "slow": "bench-model-slow", "trickle": "bench-model-trickle"}
PRICING = {"input": 3.0, "output": 15.0}  # USD per million tokens, so Tollway computes a cost
# Limits far above anything a run can reach: the limiter does all its work, and refuses nothing.
HIGH_LIMITS = {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000, "concurrent": 100_000,
               "budget_usd": 1_000_000_000.0, "budget_period": "month"}
# Governance off: DLP, metering and audit switched off (and no limits configured).
GOVERNANCE_OFF = {"dlp": {"enabled": False}, "audit": {"enabled": False}, "metering": {"enabled": False}}

SETUP_HINT = "run bench/peers/setup.sh to create it"


@dataclass(frozen=True)
class Upstreams:
    """The ports of the three emulators."""

    fast: int
    slow: int
    trickle: int

    def port(self, kind: str) -> int:
        return int(getattr(self, kind))


@dataclass(frozen=True)
class Route:
    """Where one kind of request goes for one target: the port, the model to name, extra headers."""

    port: int
    model: str
    headers: tuple[tuple[str, str], ...]

    def request(self, stream: bool) -> bytes:
        """The exact bytes of one POST /v1/messages, built once and written as is every time."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": 256,
                                "messages": [{"role": "user", "content": PROMPT}]}
        if stream:
            body["stream"] = True
        raw = json.dumps(body, separators=(",", ":")).encode()
        head = ["POST /v1/messages HTTP/1.1", f"Host: {HOST}:{self.port}", "content-type: application/json",
                f"anthropic-version: {ANTHROPIC_VERSION}", *(f"{k}: {v}" for k, v in self.headers),
                f"content-length: {len(raw)}"]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + raw

    def body(self, stream: bool) -> bytes:
        return self.request(stream).split(b"\r\n\r\n", 1)[1]


@dataclass
class Target:
    """One thing measured. `pid` is None for `direct` (no gateway: its CPU and RSS are not shown)."""

    key: str
    label: str
    routes: dict[str, Route]
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    version: str = ""
    notes: list[str] = field(default_factory=list)
    ready: Callable[[], bool] | None = None
    start_timeout: float = 60.0
    # Checked on the first answer: a header that proves a feature is really on (e.g. limits).
    expect_header: str | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def is_gateway(self) -> bool:
        return self.proc is not None

    def wait_ready(self) -> None:
        if self.proc is None or self.ready is None or self.log is None:
            return
        wait_for(self.ready, self.proc, self.label, self.log, timeout=self.start_timeout)

    def alive(self) -> bool:
        return self.proc is None or self.proc.poll() is None


def _routes(port_of: Callable[[str], int], model_of: Callable[[str], str],
            headers_of: Callable[[str], tuple[tuple[str, str], ...]]) -> dict[str, Route]:
    return {kind: Route(port_of(kind), model_of(kind), headers_of(kind)) for kind in KINDS}


# --------------------------------------------------------------------------------------------
# direct
# --------------------------------------------------------------------------------------------


def direct(upstreams: Upstreams) -> Target:
    """The emulators themselves: the baseline every "added" figure subtracts."""
    headers = (("x-api-key", UPSTREAM_KEY),)
    return Target("direct", "direct (no gateway)",
                  _routes(upstreams.port, lambda kind: MODELS[kind], lambda kind: headers))


# --------------------------------------------------------------------------------------------
# Tollway
# --------------------------------------------------------------------------------------------


def tollway_config(tmp: Path, upstreams: Upstreams, governance: bool) -> dict[str, Any]:
    """Tollway's config for one variant.

    governance on: authentication (a key of the `bench` group), access (the group is granted the
    three models), limits on the memory backend (a default for every key: rpm, tpm, concurrent and
    a budget, all far above what a run reaches), DLP with its default policy, metering and audit
    on (their defaults). governance off: the key is still checked (Tollway cannot run without
    authentication); DLP, metering and audit off, no limits.
    """
    config: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp}/tollway.db", "spill_dir": str(tmp / "spill")},
        "models": [{"id": MODELS[kind], "upstream": {"provider": "anthropic",
                                                     "base_url": f"http://{HOST}:{upstreams.port(kind)}",
                                                     "api_key": UPSTREAM_KEY},
                    "pricing": PRICING} for kind in KINDS],
    }
    if governance:
        config["limits"] = {"backend": "memory", "defaults": {"key": HIGH_LIMITS}}
    else:
        config.update(GOVERNANCE_OFF)
    return config


def _tollway_cli(tollway: str, config: Path, *args: str) -> str:
    proc = subprocess.run([tollway, *args, "--config", str(config)], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"tollway {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def tollway(procs: Processes, tmp: Path, upstreams: Upstreams, governance: bool) -> Target:
    """Start one Tollway (one worker) and return it as a target (not yet ready)."""
    exe = tollway_bin()
    key_name = "tollway-on" if governance else "tollway-off"
    tmp = tmp / key_name
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "tollway.yaml"
    config.write_text(yaml.safe_dump(tollway_config(tmp, upstreams, governance), sort_keys=False))
    _tollway_cli(exe, config, "config", "check")
    notes = [] if governance else ["DLP, metering and audit switched off (`dlp`, `metering`, `audit`: "
                                   "`{enabled: false}`), no limits; the key is still checked"]
    if governance:
        grants = [arg for kind in KINDS for arg in ("--grant", MODELS[kind])]
        _tollway_cli(exe, config, "groups", "create", "bench", *grants)
        key = json.loads(_tollway_cli(exe, config, "keys", "create", "--name", "bench", "--group", "bench",
                                      "--json"))["key"]
    else:
        key = json.loads(_tollway_cli(exe, config, "keys", "create", "--name", "bench", "--json"))["key"]
    port = free_port()
    log = tmp / "tollway.log"
    with log.open("wb") as out:
        proc = procs.start([exe, "serve", "--config", str(config), "--port", str(port), "--workers", "1"], out,
                           cwd=tmp)
    headers = (("x-api-key", str(key)),)
    label = "tollway (governance on)" if governance else "tollway (governance off)"
    target = Target(key_name, label, _routes(lambda kind: port, lambda kind: MODELS[kind], lambda kind: headers),
                    proc, log, _tollway_version(), notes,
                    ready=lambda: http_ok(f"http://{HOST}:{port}/ready"), start_timeout=60)
    if governance:
        target.expect_header = "anthropic-ratelimit-requests-limit"  # proves the limiter is on
    return target


def _tollway_version() -> str:
    try:
        from importlib.metadata import version

        return version("tollway")
    except Exception:  # a version string is a nicety, never a reason to fail the run
        return ""


# --------------------------------------------------------------------------------------------
# LiteLLM
# --------------------------------------------------------------------------------------------


def litellm_available() -> str | None:
    """None when bench/envs/litellm is usable, else why not."""
    exe = ENVS_DIR / "litellm" / "bin" / "litellm"
    return None if exe.exists() else f"{exe} does not exist; {SETUP_HINT}"


def litellm(procs: Processes, tmp: Path, upstreams: Upstreams) -> Target:
    """LiteLLM's proxy (uvicorn, one worker) with bench/peers/litellm/config.yaml, offline."""
    env_dir = ENVS_DIR / "litellm"
    tmp = tmp / "litellm"
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "TOLLWAY_BENCH_UPSTREAM_URL": f"http://{HOST}:{upstreams.fast}",
        "TOLLWAY_BENCH_SLOW_UPSTREAM_URL": f"http://{HOST}:{upstreams.slow}",
        "TOLLWAY_BENCH_TRICKLE_UPSTREAM_URL": f"http://{HOST}:{upstreams.trickle}",
        "TOLLWAY_BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
        # Offline: the bundled model-price map instead of a download at start-up.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",  # do not read a .env file from the working directory
        "DISABLE_ADMIN_UI": "True",
    }
    for var in ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL"):
        env.pop(var, None)  # nothing from the caller's shell may turn a database or cache on
    log = tmp / "litellm.log"
    argv = [str(env_dir / "bin" / "litellm"), "--config", str(PEERS_DIR / "litellm" / "config.yaml"),
            "--host", HOST, "--port", str(port), "--num_workers", "1", "--telemetry", "False",
            "--log_config", str(PEERS_DIR / "litellm" / "logging.yaml")]
    with log.open("wb") as out:
        proc = procs.start(argv, out, cwd=tmp, env=env)
    # LiteLLM's own auth is off (no master key), but a client still sends a key, as a real one would.
    headers = (("x-api-key", "sk-bench-unused"),)
    return Target("litellm", "litellm", _routes(lambda kind: port, lambda kind: MODELS[kind], lambda kind: headers),
                  proc, log, _package_version(env_dir, "litellm"),
                  ["no database, no master key, no callbacks: virtual keys, budgets, rate limits and spend "
                   "tracking all need its database, so this is LiteLLM with governance off"],
                  ready=lambda: http_ok(f"http://{HOST}:{port}/health/liveliness"), start_timeout=120)


def _package_version(env_dir: Path, name: str) -> str:
    python = env_dir / "bin" / "python"
    try:
        out = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# --------------------------------------------------------------------------------------------
# Portkey
# --------------------------------------------------------------------------------------------


def portkey_entry() -> Path:
    return ENVS_DIR / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def portkey_available() -> str | None:
    """None when bench/envs/portkey and a Node.js >= 20 are usable, else why not."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (Node.js 20: apt-get install -y nodejs)"
    if not portkey_entry().exists():
        return f"{portkey_entry()} does not exist; {SETUP_HINT}"
    major = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True,
                           timeout=30).stdout.strip()
    if not major.isdigit() or int(major) < 20:
        return f"Node.js >= 20 is needed, found {major or 'an unknown version'}"
    return None


def portkey(procs: Processes, tmp: Path, upstreams: Upstreams) -> Target:
    """Portkey's gateway on Node (one process), headless, production mode, loopback only."""
    node = shutil.which("node") or "node"
    tmp = tmp / "portkey"
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = tmp / "portkey.log"
    env = {**os.environ, "NODE_ENV": "production", "TOLLWAY_BENCH_HOST": HOST}
    env.pop("TRUSTED_CUSTOM_HOSTS", None)  # its default trusts 127.0.0.1, the emulators' host
    argv = [node, "--import", str(PEERS_DIR / "portkey" / "loopback.mjs"), str(portkey_entry()),
            f"--port={port}", "--headless"]
    with log.open("wb") as out:
        proc = procs.start(argv, out, cwd=tmp, env=env)

    def headers(kind: str) -> tuple[tuple[str, str], ...]:
        # Portkey's base URL for anthropic is https://api.anthropic.com/v1; a custom host replaces it.
        return (("x-portkey-provider", "anthropic"),
                ("x-portkey-custom-host", f"http://{HOST}:{upstreams.port(kind)}/v1"),
                ("x-api-key", UPSTREAM_KEY))

    version = ""
    with_pkg = portkey_entry().parent.parent / "package.json"
    if with_pkg.exists():
        version = str(json.loads(with_pkg.read_text()).get("version", ""))
    return Target("portkey", "portkey", _routes(lambda kind: port, lambda kind: "bench-model", headers),
                  proc, log, version,
                  ["the open-source gateway has no keys, budgets or limits of its own (no config, no guardrails "
                   "given): this is Portkey with governance off"],
                  ready=lambda: port_open(port), start_timeout=60)


# --------------------------------------------------------------------------------------------
# A first request through each target
# --------------------------------------------------------------------------------------------


def sanity_check(target: Target) -> dict[str, str]:
    """One request of each kind through the target, so a misconfiguration fails loudly here
    instead of being measured as a fast stream of errors. Returns the first answer's headers."""
    first: dict[str, str] = {}
    for kind in ("fast", "slow"):
        for stream in (False, True):
            route = target.routes[kind]
            headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION,
                       **dict(route.headers)}
            req = urllib.request.Request(f"http://{HOST}:{route.port}/v1/messages", data=route.body(stream),
                                         headers=headers, method="POST")
            deadline = time.monotonic() + 30
            while True:  # bounded: a gateway that has just started may need a moment for its first call
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, body, got = int(resp.status), resp.read(), dict(resp.headers.items())
                    break
                except urllib.error.HTTPError as exc:
                    status, body, got = exc.code, exc.read(), dict(exc.headers.items())
                    break
                except (urllib.error.URLError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            expected = b"message_stop" if stream else b'"type":"message"'
            if status != 200 or expected not in body.replace(b'": "', b'":"'):
                log = f"\n{tail(target.log)}" if target.log else ""
                raise RuntimeError(f"{target.label} answered {status} to the benchmark request ({kind}, "
                                   f"stream={stream}):\n{body[:600]!r}{log}")
            if not first:
                first = {k.lower(): v for k, v in got.items()}
    if target.expect_header and target.expect_header not in first:
        raise RuntimeError(f"{target.label}: the answer has no {target.expect_header} header, so the feature it "
                           f"proves is not on; headers were {sorted(first)}")
    return first
