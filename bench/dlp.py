"""Benchmark: how long the DLP engine takes on a Claude Code-sized request.

Builds a ~200 KB Messages request deterministically (a ~15 KB system prompt, 20 tools with long
descriptions and schemas, a long history of text, tool_use and tool_result blocks with code, shell
output and prose), once with a few planted secrets and PII and once clean, and times
``DlpEngine.inspect`` on each with the default policy (secrets → redact, pii → log)::

    .venv/bin/python bench/dlp.py               # 200 runs each
    .venv/bin/python bench/dlp.py --runs 500 --json

The clean request must produce no finding at all: it doubles as a false-positive check on
realistic text, and the script exits 1 if it does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import string
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig

WORDS = (
    "the", "a", "an", "of", "to", "in", "for", "on", "with", "by", "from", "as", "at", "is", "are", "be", "this",
    "that", "these", "those", "it", "its", "use", "using", "file", "files", "code", "function", "functions", "test",
    "tests", "module", "modules", "class", "method", "value", "values", "request", "requests", "response",
    "gateway", "model", "models", "user", "users", "tool", "tools", "result", "results", "change", "changes",
    "error", "errors", "path", "paths", "config", "configuration", "option", "options", "run", "running", "check",
    "checks", "build", "should", "must", "never", "always", "when", "before", "after", "then", "only", "also",
    "each", "every", "other", "same", "new", "old", "first", "last", "read", "write", "edit", "search", "find",
    "list", "show", "return", "returns", "call", "calls", "handle", "handles", "keep", "make", "sure", "clear",
    "short", "simple", "small", "large", "fast", "slow", "safe", "exact", "current", "working", "directory",
    "project", "repository", "branch", "commit", "message", "output", "input", "command", "commands", "shell",
    "process", "server", "client", "cache", "limit", "budget", "policy", "policies", "group", "groups", "key",
    "keys", "principal", "access", "audit", "record", "records",
)

SYSTEM_SENTENCES = (
    "You are an interactive CLI tool that helps users with software engineering tasks.",
    "Use the instructions below and the tools available to you to assist the user.",
    "IMPORTANT: Assist with defensive security tasks only.",
    "You should be concise, direct, and to the point.",
    "When you run a non-trivial bash command, you should explain what the command does and why.",
    "Remember that your output will be displayed on a command line interface.",
    "Only use emojis if the user explicitly requests it.",
    "If you cannot or will not help the user with something, please do not say why.",
    "When making changes to files, first understand the file's code conventions.",
    "NEVER assume that a given library is available, even if it is well known.",
    "Always follow security best practices and never introduce code that exposes or logs keys.",
    "Do not add comments to the code you write, unless the user asks you to.",
    "Use the TodoWrite tool to plan the task if required.",
    "Run the lint and typecheck commands if they were provided to you to ensure your code is correct.",
    "NEVER commit changes unless the user explicitly asks you to.",
    "You have the capability to call multiple tools in a single response.",
    "When doing file search, prefer to use the Task tool in order to reduce context usage.",
    "Prefer editing existing files in the codebase to creating new ones.",
)

TOOL_NAMES = (
    "Task", "Bash", "Glob", "Grep", "LS", "ExitPlanMode", "Read", "Edit", "MultiEdit", "Write",
    "NotebookEdit", "WebFetch", "TodoWrite", "WebSearch", "BashOutput", "KillBash", "SlashCommand",
    "ListMcpResources", "ReadMcpResource", "AskUser",
)

CODE_TEMPLATES = (
    '''def {f}({a}: dict[str, Any], {b}: int = {n}) -> list[str]:
    """Return the {w1} {w2} for {a}, at most {b} of them."""
    out: list[str] = []
    for key, value in sorted({a}.items()):
        if len(out) >= {b}:
            break
        if isinstance(value, str) and value.startswith("{w3}"):
            out.append(f"{{key}}={{value}}")
    return out
''',
    '''class {C}:
    def __init__(self, {a}: str, timeout: float = {n}.5) -> None:
        self.{a} = {a}
        self.timeout = timeout
        self._cache: dict[str, int] = {{}}

    async def {f}(self, {b}: bytes) -> int:
        started = time.perf_counter()
        result = await self._client.post("/v1/{w1}", data={b}, timeout=self.timeout)
        self._cache[self.{a}] = result.status
        return int((time.perf_counter() - started) * {m})
''',
    '''    @pytest.mark.parametrize("{a}", [{n}, {m}, {k}])
    def test_{f}({a}: int, tmp_path: Path) -> None:
        path = tmp_path / "{w1}.json"
        path.write_text(json.dumps({{"{w2}": {a}, "id": "{uuid}"}}))
        assert {f}(path)["{w2}"] == {a}
''',
    '''export async function {f}({a}: string, {b}?: number): Promise<{C}> {{
  const res = await fetch(`${{BASE_URL}}/api/{w1}/${{{a}}}`, {{ method: "GET" }});
  if (!res.ok) throw new Error(`{w2} failed: ${{res.status}}`);
  return (await res.json()) as {C};
}}
''',
    '''SELECT {w1}.id, {w1}.created_at, COUNT({w2}.id) AS n
FROM {w1} JOIN {w2} ON {w2}.{w1}_id = {w1}.id
WHERE {w1}.created_at >= '2024-0{d}-1{d} 10:{n2}:00' AND {w2}.amount > {n}
GROUP BY {w1}.id ORDER BY n DESC LIMIT {m};
''',
)


def _ident(rng: random.Random) -> str:
    return "_".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))).replace("-", "_")


def _sentence(rng: random.Random, n: int | None = None) -> str:
    words = [rng.choice(WORDS) for _ in range(n or rng.randint(6, 18))]
    return words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice((".", ".", ".", ",", ":"))


def _prose(rng: random.Random, chars: int) -> str:
    parts: list[str] = []
    size = 0
    while size < chars:
        s = _sentence(rng) if rng.random() < 0.6 else rng.choice(SYSTEM_SENTENCES)
        parts.append(s)
        size += len(s) + 1
        if rng.random() < 0.1:
            parts.append("\n\n")
    return " ".join(parts)


def _uuid(rng: random.Random) -> str:
    h = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _sha(rng: random.Random, n: int = 40) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _code(rng: random.Random, lines: int) -> str:
    chunks: list[str] = []
    while sum(c.count("\n") for c in chunks) < lines:
        t = rng.choice(CODE_TEMPLATES)
        chunks.append(t.format(
            f=_ident(rng), a=rng.choice(WORDS) + "_in", b=rng.choice(WORDS) + "_n",
            C="".join(w.capitalize() for w in (rng.choice(WORDS), rng.choice(WORDS))),
            w1=rng.choice(WORDS), w2=rng.choice(WORDS), w3=rng.choice(WORDS),
            n=rng.randint(1, 500), m=rng.randint(1000, 99999), k=rng.randint(10, 99),
            n2=rng.randint(10, 59), d=rng.randint(1, 9), uuid=_uuid(rng),
        ))
    return "\n".join(chunks)


def _cat_n(text: str, start: int = 1) -> str:
    return "\n".join(f"{i:>6}\u2192{line}" for i, line in enumerate(text.split("\n"), start))


def _shell_output(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        rows = [f"{_sha(rng, 7)} {_sentence(rng, rng.randint(4, 9))}" for _ in range(rng.randint(10, 30))]
        return "\n".join(rows)
    if kind == 1:
        rows = []
        for _ in range(rng.randint(10, 30)):
            name = _ident(rng) + rng.choice((".py", ".ts", ".md", ".json", ""))
            rows.append(f"-rw-r--r--  1 dev dev {rng.randint(100, 99999):>6} Jun {rng.randint(1, 30):>2} "
                        f"{rng.randint(10, 23)}:{rng.randint(10, 59)} {name}")
        return f"total {rng.randint(10, 500)}\n" + "\n".join(rows)
    if kind == 2:
        rows = [f"tests/test_{_ident(rng)}.py::test_{_ident(rng)} PASSED [{rng.randint(1, 99):>3}%]"
                for _ in range(rng.randint(10, 40))]
        return ("============================= test session starts ==============================\n"
                "platform linux -- Python 3.11.7, pytest-8.4.2, pluggy-1.6.0\n" + "\n".join(rows)
                + f"\n======================== {len(rows)} passed in {rng.randint(1, 9)}.{rng.randint(10, 99)}s"
                " ========================")
    if kind == 3:
        items = [{"id": _uuid(rng), "created_at": f"2025-0{rng.randint(1, 9)}-{rng.randint(10, 28)}T"
                  f"{rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}Z",
                  "sha": _sha(rng), "size": rng.randint(1, 10**9), "ratio": rng.random(),
                  "name": _ident(rng), "version": f"{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 9)}",
                  "addr": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
                          f":{rng.randint(1024, 65535)}",
                  "ts_ms": rng.randint(1_600_000_000_000, 1_800_000_000_000)}
                 for _ in range(rng.randint(3, 8))]
        return json.dumps(items, indent=2)
    return _prose(rng, rng.randint(500, 2500))


PLANTED_FILE = '''# local settings, do not commit
AWS_ACCESS_KEY_ID=AKIAZ7QW3ERT5YUI9OPL
AWS_SECRET_ACCESS_KEY=Jb8uT2vQx9LmN4pR7sW1yZ3cF6hK0eG5aD8iU2oX
DATABASE_PASSWORD="s3cr3t-Pa55w0rd!"
STRIPE_KEY=sk_live_51HxT9bKq2L7mN4pR8sW1yZ3c
'''

PLANTED_USER = ("Please update the billing contact to maria.gonzalez@example-corp.com, phone +1 415-555-2671; "
                "her card on file is 4111 1111 1111 1111 and the refund goes to DE89 3704 0044 0532 0130 00. "
                "Employee SSN 123-45-6789 is in the HR note.")

PLANTED_COMMAND = ("curl -H 'Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                   "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
                   "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c' https://api.internal/v1/me && "
                   "GITHUB_TOKEN=ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5" + " gh pr list")


def build_request(planted: bool, target_kb: int = 200, seed: int = 7) -> dict[str, Any]:
    """A deterministic Claude Code-like request of about ``target_kb`` KB (as JSON)."""
    rng = random.Random(seed)
    system = [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": _prose(rng, 15_000) + "\n\n<env>\nWorking directory: /home/dev/tollway\n"
         "Is directory a git repo: Yes\nPlatform: linux\nOS Version: Linux 6.8.0\nToday's date: 2025-06-01\n"
         "</env>\nRecent commits:\n" + "\n".join(f"{_sha(rng, 7)} {_sentence(rng, 6)}" for _ in range(5)),
         "cache_control": {"type": "ephemeral"}},
    ]
    tools = []
    for name in TOOL_NAMES:
        props = {
            _ident(rng): {"type": rng.choice(("string", "integer", "boolean")), "description": _sentence(rng, 15)}
            for _ in range(rng.randint(2, 6))
        }
        tools.append({"name": name, "description": _prose(rng, rng.randint(1_000, 3_500)),
                      "input_schema": {"type": "object", "properties": props, "required": list(props)[:1],
                                       "additionalProperties": False,
                                       "$schema": "http://json-schema.org/draft-07/schema#"}})
    messages: list[dict[str, Any]] = [{"role": "user", "content": [
        {"type": "text", "text": "<system-reminder>\n" + _prose(rng, 1_500) + "\n</system-reminder>"},
        {"type": "text", "text": _prose(rng, 300)},
    ]}]
    size = len(json.dumps({"system": system, "tools": tools, "messages": messages}))
    turn = 0
    while size < target_kb * 1024:
        turn += 1
        tool_id = f"toolu_01{''.join(rng.choice(string.ascii_letters + string.digits) for _ in range(22))}"
        which = rng.randrange(4)
        if which == 0:
            call = {"file_path": f"/home/dev/tollway/{_ident(rng)}/{_ident(rng)}.py", "limit": 400}
            result: Any = _cat_n(_code(rng, rng.randint(30, 120)), rng.randint(1, 50))
            name = "Read"
        elif which == 1:
            command = rng.choice(("git log --oneline -20", "ls -la", "pytest -q", "cat out.json"))
            call = {"command": f"cd /home/dev/tollway && {command}", "description": _sentence(rng, 6)}
            result = [{"type": "text", "text": _shell_output(rng)}]
            name = "Bash"
        elif which == 2:
            old = _code(rng, 8)
            call = {"file_path": f"/home/dev/tollway/{_ident(rng)}.py", "old_string": old,
                    "new_string": old.replace("return", "return  # changed", 1), "replace_all": False}
            result = "The file has been updated. Here's the result of running `cat -n` on a snippet:\n" + _cat_n(
                _code(rng, 12), rng.randint(1, 300))
            name = "Edit"
        else:
            call = {"pattern": rng.choice(WORDS) + r"\s+\w+", "path": "/home/dev/tollway", "output_mode": "content"}
            result = "\n".join(f"/home/dev/tollway/{_ident(rng)}.py:{rng.randint(1, 999)}:    {_sentence(rng, 8)}"
                               for _ in range(rng.randint(5, 25)))
            name = "Grep"
        messages.append({"role": "assistant", "content": [
            {"type": "text", "text": _prose(rng, rng.randint(80, 600))},
            {"type": "tool_use", "id": tool_id, "name": name, "input": call},
        ]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id, "content": result}]})
        added = 2
        if turn % 6 == 0:
            messages.append({"role": "assistant", "content": _prose(rng, rng.randint(200, 800))})
            messages.append({"role": "user", "content": _prose(rng, rng.randint(50, 300))})
            added = 4
        size += len(json.dumps(messages[-added:])) + added
    if planted:
        n = len(messages)
        messages[n // 4]["content"] = PLANTED_USER if isinstance(messages[n // 4]["content"], str) else \
            [*messages[n // 4]["content"], {"type": "text", "text": PLANTED_USER}]
        k = next(i for i in range(n // 2, n) if messages[i]["role"] == "assistant")  # keep the turns alternating
        messages[k:k] = [
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_planted_1", "name": "Bash", "input": {"command": PLANTED_COMMAND}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_planted_1", "content": _cat_n(PLANTED_FILE)}]},
        ]
    messages.append({"role": "assistant", "content": "Done: the change is in and the tests pass."})
    messages.append({"role": "user", "content": "Now run the tests again and fix what fails."})
    return {"model": "claude-sonnet-4-5", "max_tokens": 32_000, "stream": True,
            "system": system, "tools": tools, "messages": messages}


Times = dict[str, tuple[list[float], list[float]]]


def _time(engine: DlpEngine, bodies: dict[str, dict[str, Any]], runs: int) -> Times:
    """Wall-clock and CPU milliseconds of ``runs`` scans of each body, interleaved (after 5 warm-up rounds),
    so that a change in the machine's load touches every body alike."""
    times: Times = {name: ([], []) for name in bodies}
    for i in range(runs + 5):
        for name, body in bodies.items():
            t, c = time.perf_counter(), time.process_time()
            engine.inspect(body)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            if i >= 5:
                times[name][0].append(wall * 1000)
                times[name][1].append(cpu * 1000)
    return times


def _summary(times: tuple[list[float], list[float]]) -> dict[str, float]:
    wall, cpu = times
    q = statistics.quantiles(wall, n=100)
    return {"p50_ms": round(statistics.median(wall), 3), "p99_ms": round(q[98], 3),
            "min_ms": round(min(wall), 3), "max_ms": round(max(wall), 3),
            "cpu_p50_ms": round(statistics.median(cpu), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--kb", type=int, default=200, help="request size in KB (default 200)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    engine = DlpEngine(DlpConfig())
    planted = build_request(True, args.kb)
    clean = build_request(False, args.kb)
    sizes = {name: len(json.dumps(b).encode()) for name, b in (("planted", planted), ("clean", clean))}

    result = engine.inspect(planted)
    clean_result = engine.inspect(clean)
    report: dict[str, Any] = {
        "request_bytes": sizes,
        "strings": {"tools": len(planted["tools"]), "messages": len(planted["messages"])},
        "planted_findings": [f"{f.kind}@{f.where}x{f.count}:{f.action}" for f in result.findings],
        "clean_findings": [f"{f.kind}@{f.where}x{f.count}" for f in clean_result.findings],
        **{name: _summary(t) for name, t in _time(engine, {"planted": planted, "clean": clean}, args.runs).items()},
        "runs": args.runs,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"request: {sizes['planted'] / 1024:.0f} KB planted, {sizes['clean'] / 1024:.0f} KB clean; "
              f"{len(planted['messages'])} messages, {len(planted['tools'])} tools; {args.runs} runs each")
        print("planted findings:")
        for line in report["planted_findings"]:
            print(f"  {line}")
        print(f"clean findings: {report['clean_findings'] or 'none'}")
        for name in ("planted", "clean"):
            s = report[name]
            print(f"{name:>8}: p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  "
                  f"(min {s['min_ms']:.2f}, max {s['max_ms']:.2f}; CPU p50 {s['cpu_p50_ms']:.2f} ms)")
        print(f"load average (1 min) at the end: {report['load_average_1m']} on {report['cpus']} CPUs "
              "(other work on the machine inflates wall-clock times)")
    return 1 if clean_result.findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
