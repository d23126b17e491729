"""`/v1/responses` and `/v1/conversations` through the stock OpenAI SDK over HTTP: answers and
streams (mock model and Anthropic emulator), a function-tool round trip, stored state and its
ownership, curated system prompts, the `tollway` block, errors in the OpenAI envelope, and
retention. The state tests run on SQLite, and on PostgreSQL when TOLLWAY_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, standard_config, start_gateway
from tests.emulator import AnthropicEmulator, SSEReply, default_stream_events, sse_event
from tests.stores import store_url

SONNET = "claude-sonnet-4-5-20250929"
BASH: Any = {"type": "function", "name": "Bash", "description": "Run a shell command",
             "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
HOUSE = "House rules: be kind."
OPS = "Ops rules: be on call."


def responses_config(upstream_url: str, url: str) -> dict[str, Any]:
    return {
        **standard_config(upstream_url),
        "store": {"url": url},
        "responses": {
            "system_prompts": {"house": HOUSE, "ops": OPS},
            "default_system_prompt": "house",
            "groups": {"ops-team": {"system_prompt": "ops", "store_default": False}},
        },
    }


@dataclass
class Org:
    """A gateway with three callers: two users' personal keys and the ops-team service key."""

    gw: Gateway
    admin: str
    alice: str
    bob: str
    ops: str

    def sdk(self, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.base_url + "/v1", api_key=key or self.alice, max_retries=0)

    def http(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.gw.base_url + path, timeout=10,
                             headers={"authorization": f"Bearer {key or self.alice}"}, **kwargs)


def _org(gw: Gateway) -> Org:
    """Users, a group and their keys, made through the admin API (one CLI call, for its key)."""
    admin = json.loads(gw.cli("keys", "create", "--name", "ops-admin", "--admin", "--json").stdout)["key"]

    def post(path: str, body: dict[str, Any]) -> Any:
        resp = httpx.post(gw.base_url + "/admin/v1" + path, json=body, headers={"x-api-key": admin}, timeout=10)
        assert resp.status_code == 201, resp.text
        return resp.json()

    post("/groups", {"name": "ops-team", "grants": ["*"]})
    keys = {}
    for name in ("alice", "bob"):
        user = post("/users", {"name": name, "groups": ["default"]})
        keys[name] = post("/keys", {"name": name, "user_id": user["id"]})["key"]
    keys["ops"] = post("/keys", {"name": "ops", "group_id": "ops-team"})["key"]
    return Org(gw, admin, keys["alice"], keys["bob"], keys["ops"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def org(request: pytest.FixtureRequest, emulator: AnthropicEmulator,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    """The gateway, on each store back-end (tests marked SQLITE_ONLY use only the first)."""
    workdir = tmp_path_factory.mktemp(f"responses-{request.param}")
    with store_url(request.param, workdir) as url:
        gw = start_gateway(workdir, responses_config(emulator.base_url, url), env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
        try:
            yield _org(gw)
        finally:
            gw.stop()


# What does not depend on the store back-end runs on the SQLite gateway only.
SQLITE_ONLY = pytest.mark.parametrize("org", ["sqlite"], indirect=True)


def _error(resp: httpx.Response) -> dict[str, Any]:
    assert resp.headers["x-request-id"] == resp.headers["request-id"], resp.headers
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}, body
    return dict(body["error"])


def _frames(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in data.split(b"\n\n"):
        if not block or block.startswith(b":"):
            continue
        name, payload = block.split(b"\n", 1)
        assert name.startswith(b"event: ") and payload.startswith(b"data: "), block
        out.append((name[7:].decode(), orjson.loads(payload[6:])))
    return out


# -- answers and streams ---------------------------------------------------------------------------------


@SQLITE_ONLY
def test_create_text(org: Org) -> None:
    raw = org.sdk().responses.with_raw_response.create(model="tollway-mock", input="hello there",
                                                        metadata={"ticket": "T-1"})
    resp = raw.parse()
    assert raw.headers["x-request-id"] == raw.headers["request-id"] and raw.headers["request-id"].startswith("req_")
    assert resp.object == "response" and resp.id.startswith("resp_") and resp.status == "completed"
    assert resp.model == "tollway-mock" and resp.to_dict()["store"] is True and resp.metadata == {"ticket": "T-1"}
    assert resp.output_text == "Hello from the Tollway mock model. You said: hello there"
    assert resp.usage is not None and resp.usage.output_tokens == 10
    assert resp.usage.total_tokens == resp.usage.input_tokens + 10


@SQLITE_ONLY
def test_stream_helper(org: Org) -> None:
    deltas = []
    with org.sdk().responses.stream(model="tollway-mock", input="stream me") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello from the Tollway mock model. You said: stream me"
    assert final.status == "completed" and final.usage is not None and final.usage.output_tokens == 10


@SQLITE_ONLY
def test_create_stream_event_sequence(org: Org) -> None:
    events = list(org.sdk().responses.create(model="tollway-mock", input="hi", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added", "response.output_text.delta"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1]
    assert done.type == "response.completed" and done.response.output_text.endswith("You said: hi")
    assert {e.response.id for e in events if hasattr(e, "response")} == {done.response.id}


@SQLITE_ONLY
def test_stream_wire_format(org: Org) -> None:
    with httpx.stream("POST", org.gw.base_url + "/v1/responses", timeout=10,
                      json={"model": "tollway-mock-slow", "input": "slow one", "stream": True},
                      headers={"authorization": f"Bearer {org.alice}"}) as resp:
        data = b"".join(resp.iter_bytes())
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-request-id"] == resp.headers["request-id"]
    frames = _frames(data)
    assert all(name == payload["type"] for name, payload in frames)
    assert frames[-1][0] == "response.completed" and b"[DONE]" not in data


@SQLITE_ONLY
def test_function_tool_round_trip_stateless(org: Org) -> None:
    sdk = org.sdk()
    ask: Any = [{"role": "user", "content": 'call Bash with {"command": "echo hi"}'}]
    first = sdk.responses.create(model="tollway-mock", input=ask, tools=[BASH], store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert first.status == "completed" and len(calls) == 1
    call = calls[0]
    assert call.name == "Bash" and json.loads(call.arguments) == {"command": "echo hi"} and call.call_id
    follow: Any = [*ask, call.model_dump(exclude_none=True),
                   {"type": "function_call_output", "call_id": call.call_id, "output": "hi from the shell"}]
    second = sdk.responses.create(model="tollway-mock", input=follow, tools=[BASH], store=False)
    assert second.output_text == "The tool returned: hi from the shell"


@SQLITE_ONLY
def test_streamed_function_call(org: Org) -> None:
    events = list(org.sdk().responses.create(model="tollway-mock", tools=[BASH], stream=True,
                                              input='call Bash with {"command": "ls"}'))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"command": "ls"}
    final = events[-1]
    assert final.type == "response.completed"
    assert [o.type for o in final.response.output] == ["message", "function_call"]


@SQLITE_ONLY
def test_anthropic_upstream_gets_canonical_request(org: Org, upstream: AnthropicEmulator) -> None:
    resp = org.sdk().responses.create(model=SONNET, input="hi", instructions="Be brief.", max_output_tokens=50,
                                       temperature=0.5, tools=[BASH], tool_choice="auto", store=False)
    assert resp.model == SONNET and resp.output_text == "Hello from the emulator."
    assert resp.instructions == "Be brief." and resp.max_output_tokens == 50
    sent = upstream.received[0].json
    assert sent["system"] == [{"type": "text", "text": "Be brief."}] and sent["max_tokens"] == 50
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert sent["temperature"] == 0.5 and sent["tools"][0]["name"] == "Bash"
    assert sent["tool_choice"] == {"type": "auto"} and "tollway" not in sent and "metadata" not in sent


@SQLITE_ONLY
def test_renamed_model_answers_under_requested_id(org: Org, upstream: AnthropicEmulator) -> None:
    resp = org.sdk().responses.create(model="claude-renamed", input="hi", store=False)
    assert resp.model == "claude-renamed" and upstream.received[0].json["model"] == "claude-haiku-4-5-20251001"
    upstream.script(SSEReply([sse_event(e) for e in default_stream_events("claude-haiku-4-5-20251001")]))
    events = list(org.sdk().responses.create(model="claude-renamed", input="hi", store=False, stream=True))
    assert events[-1].type == "response.completed" and events[-1].response.model == "claude-renamed"


@SQLITE_ONLY
def test_upstream_failure_mid_stream_ends_with_response_failed(org: Org, upstream: AnthropicEmulator) -> None:
    head = default_stream_events(SONNET)[:3]
    upstream.script(SSEReply([sse_event(e) for e in head]
                             + [sse_event({"type": "error", "error": {"type": "overloaded_error",
                                                                      "message": "Overloaded"}})]))
    with httpx.stream("POST", org.gw.base_url + "/v1/responses", timeout=10,
                      json={"model": SONNET, "input": "hi", "stream": True},
                      headers={"authorization": f"Bearer {org.alice}"}) as resp:
        frames = _frames(b"".join(resp.iter_bytes()))
    assert resp.status_code == 200
    assert [name for name, _ in frames][-2:] == ["error", "response.failed"]
    assert frames[-1][1]["response"]["status"] == "failed"
    assert frames[-1][1]["response"]["error"]["code"] == "server_error"


@SQLITE_ONLY
def test_namespace_and_hosted_tools_as_codex_sends_them(org: Org, upstream: AnthropicEmulator) -> None:
    namespace: Any = {"type": "namespace", "name": "agents", "description": "Sub-agents.", "tools": [
        {"type": "function", "name": "spawn_agent", "strict": False,
         "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}}]}
    tools: Any = [BASH, namespace, {"type": "web_search", "external_web_access": False}]
    resp = org.sdk().responses.create(model="tollway-mock", tools=tools, store=False,
                                       input='call spawn_agent with {"task": "tests"}')
    call = next(item for item in resp.output if item.type == "function_call")
    assert call.name == "spawn_agent" and call.namespace == "agents"
    org.sdk().responses.create(model=SONNET, tools=tools, store=False, input="hi")
    assert [t["name"] for t in upstream.received[0].json["tools"]] == ["Bash", "spawn_agent"]


# -- curated system prompts and the tollway block ------------------------------------------------------------


@pytest.mark.parametrize(("choice", "who", "system"), [
    (None, "alice", [{"type": "text", "text": "Be brief."}]),
    ({"system_prompt": "off"}, "alice", [{"type": "text", "text": "Be brief."}]),
    ({"system_prompt": "default"}, "alice", [{"type": "text", "text": HOUSE}, {"type": "text", "text": "Be brief."}]),
    ({"system_prompt": "default"}, "ops", [{"type": "text", "text": OPS}, {"type": "text", "text": "Be brief."}]),
    ({"system_prompt": "house"}, "ops", [{"type": "text", "text": HOUSE}, {"type": "text", "text": "Be brief."}]),
])
@SQLITE_ONLY
def test_curated_prompt_goes_before_instructions(org: Org, upstream: AnthropicEmulator, choice: Any, who: str,
                                                 system: Any) -> None:
    extra = {"tollway": choice} if choice is not None else None
    resp = org.sdk(getattr(org, who)).responses.create(model=SONNET, input="hi", instructions="Be brief.",
                                                         store=False, extra_body=extra)
    assert upstream.received[0].json["system"] == system
    assert resp.instructions == "Be brief."  # the curated prompt is ours: never echoed


@pytest.mark.parametrize(("block", "param", "code"), [
    ({"system_prompt": "nope"}, "tollway.system_prompt", "invalid_body"),
    ({"system_prompt": 3}, "tollway.system_prompt", "invalid_body"),
    ({"system_promt": "house"}, "tollway.system_promt", "unknown_parameter"),
    ("house", "tollway", "invalid_body"),
])
@SQLITE_ONLY
def test_tollway_block_errors(org: Org, block: Any, param: str, code: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        org.sdk().responses.create(model="tollway-mock", input="hi", extra_body={"tollway": block})
    assert err.value.param == param and err.value.code == code
    assert err.value.type == "invalid_request_error"


# -- refusals in the OpenAI envelope ---------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"model": "tollway-mock"}, "input", "invalid_body"),
    ({"model": "tollway-mock", "input": [{"type": "message", "role": "user"}]}, "input[0].content", "invalid_body"),
    ({"model": "tollway-mock", "input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role",
     "invalid_body"),
    ({"model": "tollway-mock", "input": [{"type": "function_call_output", "call_id": "c1", "output": "x"}]},
     "input[0].call_id", "invalid_body"),
    ({"model": "tollway-mock", "input": "hi", "tools": [{"type": "code_interpreter"}]}, "tools[0].type",
     "unsupported_tool_type"),
    ({"model": "tollway-mock", "input": "hi", "store": "yes"}, "store", "invalid_body"),
    ({"model": "tollway-mock", "input": "hi", "metadata": {"k": 1}}, "metadata.k", "invalid_body"),
    ({"model": "tollway-mock", "input": "hi", "previous_response_id": "resp_x", "conversation": "conv_x"},
     "conversation", "mutually_exclusive_parameters"),
])
@SQLITE_ONLY
def test_malformed_requests_are_400_naming_the_param(org: Org, body: Any, param: str, code: str) -> None:
    resp = org.http("POST", "/v1/responses", json=body)
    assert resp.status_code == 400, resp.text
    error = _error(resp)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error"), error


@SQLITE_ONLY
def test_auth_and_model_errors(org: Org) -> None:
    bad = openai.OpenAI(base_url=org.gw.base_url + "/v1", api_key="tw-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as auth:
        bad.responses.create(model="tollway-mock", input="hi")
    assert auth.value.code == "invalid_api_key" and auth.value.request_id
    with pytest.raises(openai.AuthenticationError):
        bad.responses.retrieve("resp_whatever")
    with pytest.raises(openai.NotFoundError) as missing:
        org.sdk().responses.create(model="no-such-model", input="hi")
    assert missing.value.code == "model_not_found" and missing.value.param == "model"
    assert _error(org.http("POST", "/v1/responses", content=b"{nope"))["type"] == "invalid_request_error"


# -- state: responses ---------------------------------------------------------------------------------------------


def test_previous_response_id_rebuilds_history(org: Org, upstream: AnthropicEmulator) -> None:
    sdk = org.sdk()
    first = sdk.responses.create(model=SONNET, input="first question", instructions="Only the first time.")
    second = sdk.responses.create(model=SONNET, input="second question", previous_response_id=first.id)
    third = sdk.responses.create(model=SONNET, input="third question", previous_response_id=second.id,
                                 stream=True)
    final = list(third)[-1]
    assert final.type == "response.completed" and final.response.previous_response_id == second.id
    assert second.previous_response_id == first.id and second.instructions is None
    answer = [{"type": "text", "text": "Hello from the emulator."}]
    sent = upstream.received[2].json
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first question"}]},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": [{"type": "text", "text": "second question"}]},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": [{"type": "text", "text": "third question"}]},
    ]
    assert "system" not in sent and "system" not in upstream.received[1].json  # instructions not carried over
    # The streamed response was stored before its last event went out.
    assert sdk.responses.retrieve(final.response.id).output_text == "Hello from the emulator."


def test_mock_sees_the_history_through_a_tool_round_trip(org: Org) -> None:
    sdk = org.sdk()
    first = sdk.responses.create(model="tollway-mock", tools=[BASH], input='call Bash with {"command": "date"}')
    call = next(item for item in first.output if item.type == "function_call")
    second = sdk.responses.create(model="tollway-mock", tools=[BASH], previous_response_id=first.id,
                                  input=[{"type": "function_call_output", "call_id": call.call_id,
                                          "output": "Tue Nov 24"}])
    assert second.output_text == "The tool returned: Tue Nov 24"


def test_retrieve_input_items_and_delete(org: Org) -> None:
    sdk = org.sdk()
    items: Any = [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "one"},
                  {"role": "assistant", "content": "two"}, {"role": "user", "content": "three"}]
    made = sdk.responses.create(model="tollway-mock", input=items)
    got = sdk.responses.retrieve(made.id)
    assert got.model_dump() == made.model_dump()
    listed = sdk.responses.input_items.list(made.id, order="asc")
    assert [(i.type, getattr(i, "role", None)) for i in listed.data] == [
        ("message", "developer"), ("message", "user"), ("message", "assistant"), ("message", "user")]
    ids = [i.id for i in listed.data]
    assert len(set(ids)) == 4 and all(ids)
    raw = org.http("GET", f"/v1/responses/{made.id}/input_items", params={"limit": 2}).json()
    assert [i["id"] for i in raw["data"]] == ids[::-1][:2] and raw["has_more"] is True
    assert (raw["first_id"], raw["last_id"]) == (ids[3], ids[2])
    rest = org.http("GET", f"/v1/responses/{made.id}/input_items", params={"limit": 2, "after": ids[2]}).json()
    assert [i["id"] for i in rest["data"]] == [ids[1], ids[0]] and rest["has_more"] is False
    bad = org.http("GET", f"/v1/responses/{made.id}/input_items", params={"after": "msg_nope"})
    assert bad.status_code == 400 and _error(bad)["code"] == "invalid_cursor"
    assert _error(org.http("GET", f"/v1/responses/{made.id}/input_items", params={"limit": 0}))["param"] == "limit"
    sdk.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as chained:
        sdk.responses.create(model="tollway-mock", input="again", previous_response_id=made.id)
    assert chained.value.code == "previous_response_not_found" and chained.value.param == "previous_response_id"


def test_store_false_is_neither_retrievable_nor_chainable(org: Org) -> None:
    sdk = org.sdk()
    made = sdk.responses.create(model="tollway-mock", input="forget me", store=False)
    assert made.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError) as err:
        sdk.responses.create(model="tollway-mock", input="and?", previous_response_id=made.id)
    assert err.value.code == "previous_response_not_found" and err.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(made.id)


def test_group_default_store_false(org: Org) -> None:
    ops = org.sdk(org.ops)
    made = ops.responses.create(model="tollway-mock", input="ops call")
    assert made.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        ops.responses.retrieve(made.id)
    kept = ops.responses.create(model="tollway-mock", input="keep this", store=True)
    assert ops.responses.retrieve(kept.id).to_dict()["store"] is True


# -- state: conversations -----------------------------------------------------------------------------------------


def test_conversations_api(org: Org) -> None:
    sdk = org.sdk()
    conv = sdk.conversations.create(items=[{"type": "message", "role": "user", "content": "My name is Ann."}],
                                    metadata={"topic": "names"})
    assert conv.id.startswith("conv_") and conv.metadata == {"topic": "names"}
    assert sdk.conversations.retrieve(conv.id).model_dump() == conv.model_dump()
    r1 = sdk.responses.create(model="tollway-mock", input="What is my name?", conversation=conv.id)
    assert r1.conversation is not None and r1.conversation.id == conv.id
    r2 = sdk.responses.create(model="tollway-mock", input="Thanks.", conversation={"id": conv.id}, stream=True)
    assert list(r2)[-1].type == "response.completed"
    everything = sdk.conversations.items.list(conv.id, order="asc", limit=100)
    dumped: list[Any] = [i.to_dict() for i in everything.data]
    texts = [(i["role"], i["content"][0]["text"]) for i in dumped]
    assert texts == [
        ("user", "My name is Ann."), ("user", "What is my name?"),
        ("assistant", "Hello from the Tollway mock model. You said: What is my name?"),
        ("user", "Thanks."), ("assistant", "Hello from the Tollway mock model. You said: Thanks."),
    ]
    ids = [str(i.id) for i in everything.data]
    assert len(set(ids)) == 5
    page = org.http("GET", f"/v1/conversations/{conv.id}/items", params={"limit": 2}).json()  # default: desc
    assert [i["id"] for i in page["data"]] == [ids[4], ids[3]] and page["has_more"] is True
    assert (page["object"], page["first_id"], page["last_id"]) == ("list", ids[4], ids[3])
    nxt = org.http("GET", f"/v1/conversations/{conv.id}/items", params={"limit": 2, "after": ids[3]}).json()
    assert [i["id"] for i in nxt["data"]] == [ids[2], ids[1]] and nxt["has_more"] is True
    asc = org.http("GET", f"/v1/conversations/{conv.id}/items", params={"order": "asc", "after": ids[2]}).json()
    assert [i["id"] for i in asc["data"]] == ids[3:] and asc["has_more"] is False
    assert sdk.conversations.items.retrieve(ids[0], conversation_id=conv.id).id == ids[0]
    for params, code in (({"after": "msg_nope"}, "invalid_cursor"), ({"order": "up"}, None),
                         ({"limit": 101}, None)):
        bad = org.http("GET", f"/v1/conversations/{conv.id}/items", params=params)
        assert bad.status_code == 400 and _error(bad)["param"] == next(iter(params)), params
        if code:
            assert _error(bad)["code"] == code
    # The history reached the model: the mock answers the last user text of the whole conversation.
    assert sdk.conversations.delete(conv.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError) as gone:
        sdk.responses.create(model="tollway-mock", input="hello?", conversation=conv.id)
    assert gone.value.code == "conversation_not_found" and gone.value.param == "conversation"


def test_conversation_history_reaches_the_upstream(org: Org, upstream: AnthropicEmulator) -> None:
    sdk = org.sdk()
    conv = sdk.conversations.create(items=[{"role": "user", "content": "Remember 42."},
                                           {"role": "assistant", "content": "Noted."}])
    sdk.responses.create(model=SONNET, input="What number?", conversation=conv.id, store=False)
    assert upstream.received[0].json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Remember 42."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Noted."}]},
        {"role": "user", "content": [{"type": "text", "text": "What number?"}]},
    ]
    # store: false keeps the response object away, not the conversation's items.
    assert len(sdk.conversations.items.list(conv.id).data) == 4


def test_conversation_items_are_validated(org: Org) -> None:
    resp = org.http("POST", "/v1/conversations", json={"items": [{"type": "message", "role": "user"}]})
    assert resp.status_code == 400 and _error(resp)["param"] == "items[0].content"
    empty = org.http("POST", "/v1/conversations")
    assert empty.status_code == 200 and empty.json()["object"] == "conversation" and empty.json()["metadata"] == {}


def _foreign_attempts(other: openai.OpenAI, response_id: str, conversation_id: str) -> list[Callable[[], Any]]:
    """Every way another owner could touch a response and a conversation."""
    return [
        lambda: other.responses.retrieve(response_id),
        lambda: other.responses.input_items.list(response_id),
        lambda: other.responses.delete(response_id),
        lambda: other.responses.create(model="tollway-mock", input="x", previous_response_id=response_id),
        lambda: other.conversations.retrieve(conversation_id),
        lambda: other.conversations.items.list(conversation_id),
        lambda: other.conversations.delete(conversation_id),
        lambda: other.responses.create(model="tollway-mock", input="x", conversation=conversation_id),
    ]


def test_foreign_ids_are_404(org: Org) -> None:
    alice = org.sdk()
    made = alice.responses.create(model="tollway-mock", input="mine")
    conv = alice.conversations.create(items=[{"role": "user", "content": "private"}])
    for key in (org.bob, org.ops):
        for attempt in _foreign_attempts(org.sdk(key), made.id, conv.id):
            with pytest.raises(openai.NotFoundError) as err:
                attempt()
            assert "mine" not in str(err.value.body) and "private" not in str(err.value.body)
    # Nothing changed for the owner.
    assert alice.responses.retrieve(made.id).output_text.endswith("You said: mine")
    assert len(alice.conversations.items.list(conv.id).data) == 1


def test_state_routes_are_audited(org: Org) -> None:
    resp = org.http("GET", "/v1/responses/resp_unknown", key=org.bob)
    assert resp.status_code == 404 and _error(resp)["code"] == "not_found"
    rid = resp.headers["x-request-id"]
    deadline = time.monotonic() + 8
    records: list[Any] = []
    while not records and time.monotonic() < deadline:
        records = httpx.get(org.gw.base_url + "/admin/v1/audit", params={"request_id": rid},
                            headers={"x-api-key": org.admin}).json()["data"]
        time.sleep(0.1)
    assert len(records) == 1 and records[0]["route"] == "responses_get" and records[0]["status"] == 404


def test_prune_removes_old_state(org: Org) -> None:
    sdk = org.sdk()
    old = sdk.responses.create(model="tollway-mock", input="old")
    old_conv = sdk.conversations.create(items=[{"role": "user", "content": "old"}])
    cut = datetime.fromtimestamp(old.created_at + 1, UTC)
    while time.time() < cut.timestamp() + 0.05:
        time.sleep(0.05)
    new = sdk.responses.create(model="tollway-mock", input="new")
    new_conv = sdk.conversations.create()
    out = json.loads(org.gw.cli("conversations", "prune", "--older-than", cut.isoformat(), "--json").stdout)
    assert out["responses"] >= 1 and out["conversations"] >= 1
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(old.id)
    with pytest.raises(openai.NotFoundError):
        sdk.conversations.retrieve(old_conv.id)
    assert sdk.responses.retrieve(new.id).id == new.id and sdk.conversations.retrieve(new_conv.id).id == new_conv.id


# -- configuration ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("responses", "message"), [
    ({"default_system_prompt": "missing"}, "default_system_prompt: 'missing' is not one of system_prompts"),
    ({"system_prompts": {"a": "A"}, "groups": {"eng": {"system_prompt": "b"}}},
     "groups.eng.system_prompt: 'b' is not one of system_prompts"),
    ({"system_prompts": {"off": "x"}}, "'off' is reserved"),
    ({"groups": {"eng": {"store_defualt": False}}}, "store_defualt"),
])
def test_bad_responses_config_is_refused_at_start(responses: Any, message: str) -> None:
    from tollway.config import ConfigError, parse_settings

    with pytest.raises(ConfigError) as err:
        parse_settings({"responses": responses})
    assert message in str(err.value)
