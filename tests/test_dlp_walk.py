"""DLP walks the whole forwarded body, not a list of known fields (red-team item 17.6). Pure CPU."""

from __future__ import annotations

import json
from typing import Any

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig

TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
PH = "[REDACTED:github_token:1]"


def redact(body: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    result = DlpEngine(DlpConfig()).inspect(body)
    return result.body, {f.where for f in result.findings if f.kind == "github_token"}


def base(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_every_field_the_red_team_found_is_scanned_and_redacted() -> None:
    body = {
        "model": "m", "max_tokens": 10,
        "stop_sequences": [f"stop {TOKEN}"],
        "some_future_field": {"nested": [f"x {TOKEN}"]},
        "tool_choice": {"type": "tool", "name": TOKEN},
        "tools": [{"name": f"n {TOKEN}", "description": "d", "input_schema": {"type": "object"},
                   "x_extra": f"e {TOKEN}"}],
        "mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "m",
                         "authorization_token": TOKEN}],
        "messages": [
            {"role": "user", "name": f"who {TOKEN}", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                 "alt": f"img {TOKEN}"},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                                "data": "JVBERi0x"}, "note": f"doc {TOKEN}"},
                {"type": "text", "text": "quoted", "citations": [
                    {"type": "char_location", "cited_text": f"cite {TOKEN}", "document_index": 0,
                     "start_char_index": 0, "end_char_index": 5}]},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": f"think {TOKEN}", "signature": "c2ln"},
                {"type": "redacted_thinking", "data": f"opaque {TOKEN}"},
                {"type": "text", "text": "ok"}]},
        ],
    }
    out, where = redact(body)
    assert TOKEN not in json.dumps(out)
    assert where == {
        "stop_sequences[0]", "some_future_field.nested[0]", "tool_choice.name", "tools[0].name",
        "tools[0].x_extra", "mcp_servers[0].authorization_token", "messages[0].name",
        "messages[0].content[0].alt", "messages[0].content[1].note",
        "messages[0].content[2].citations[0].cited_text", "messages[1].content[0].thinking",
        "messages[1].content[1].data",
    }
    assert out["stop_sequences"] == [f"stop {PH}"]
    assert out["mcp_servers"][0]["authorization_token"] == PH
    assert out["tool_choice"]["name"] == PH
    # The bytes of base64 sources are not text and are left as they are.
    assert out["messages"][0]["content"][0]["source"]["data"] == "iVBORw0KGgo="


def test_unknown_keys_are_scanned_and_renamed_but_api_field_names_are_not() -> None:
    body = base(metadata={"user_id": "u1", TOKEN: "v"})
    out, where = redact(body)
    assert where == {"metadata"}
    assert out["metadata"] == {"user_id": "u1", PH: "v"}


def test_url_sources_and_their_extra_fields_are_scanned() -> None:
    url = f"https://files.example/a.png?token={TOKEN}"
    body = base(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": url}}]}])
    out, where = redact(body)
    assert where == {"messages[0].content[0].source.url"}
    assert TOKEN not in json.dumps(out)


def test_a_clean_body_is_forwarded_as_is() -> None:
    body = base(stop_sequences=["END"], tool_choice={"type": "auto"})
    result = DlpEngine(DlpConfig()).inspect(body)
    assert result.body is body and not result.changed and not result.findings
