"""Error envelopes on the wire, one renderer per dialect family, each taking a `Refusal`.

* Anthropic (`/v1/messages`, count_tokens, `/v1/models`): `{"type": "error", "error": {type,
  message}, "request_id"}` with `request-id`.
* OpenAI (`/v1/chat/completions`, `/v1/responses`, `/v1/conversations`, DECISIONS.md 14):
  `{"error": {message, type, code, param}}` with `request-id` and `x-request-id`.

Both add `retry-after` wherever a retry makes sense (DECISIONS.md 8), whether the error is ours
or an upstream's passed through. An upstream's own error answer (an `UpstreamReply` with status
≥ 400, always an Anthropic envelope from any adapter) is passed through in the Anthropic dialect
and converted, keeping its status, message and OpenAI `code`/`param`, in the OpenAI one.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from tollway.upstream.base import UpstreamReply
from tollway.wire.errors import anthropic_error, anthropic_type_for, is_anthropic_envelope
from tollway.wire.refusal import Refusal

JSON = "application/json"
DEFAULT_RETRY_AFTER = "2"


def error_headers(status: int, request_id: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """`request-id` on every error, and `retry-after` wherever a retry makes sense."""
    out = {**(headers or {}), "request-id": request_id}
    if status in (429, 503, 529) and "retry-after" not in out:
        out["retry-after"] = DEFAULT_RETRY_AFTER
    return out


# -- Anthropic -----------------------------------------------------------------------------------


def error_response(
    status: int, message: str, request_id: str, error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An Anthropic envelope with the headers `error_headers` gives."""
    out = error_headers(status, request_id, headers)
    body = anthropic_error(error_type or anthropic_type_for(status), message, request_id)
    return Response(body, status, headers=out, media_type=JSON)


def anthropic_refusal(refusal: Refusal, request_id: str, headers: dict[str, str] | None = None) -> Response:
    return error_response(refusal.status, refusal.message, request_id, refusal.error_type,
                          {**refusal.headers, **(headers or {})})


def anthropic_upstream_error(reply: UpstreamReply, request_id: str) -> Response:
    """An upstream's error answer: passed through when it is already an Anthropic envelope."""
    if is_anthropic_envelope(reply.body):
        return Response(reply.body, reply.status, headers=error_headers(reply.status, request_id, reply.headers),
                        media_type=JSON)
    return error_response(
        reply.status if reply.status >= 400 else 502,
        f"the upstream answered HTTP {reply.status} without an Anthropic error body",
        request_id, headers=reply.headers,
    )


# -- OpenAI ----------------------------------------------------------------------------------------

# (type, code) of the OpenAI envelope for each status the gateway itself answers. openai-python
# picks its exception class by status alone (401 AuthenticationError, 403 PermissionDeniedError,
# 404 NotFoundError, 429 RateLimitError, ≥500 InternalServerError…), so the type string is for
# people and logs: ours follows DECISIONS.md 5/6 (authentication_error, permission_error), the
# codes are the ones OpenAI sends (invalid_api_key, model_not_found, rate_limit_exceeded,
# insufficient_quota) or Kindo documents (invalid_body, model_access_denied).
OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "model_access_denied"),
    404: ("invalid_request_error", "model_not_found"),
    405: ("invalid_request_error", None),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "overloaded"),
    504: ("server_error", "timeout"),
    529: ("server_error", "overloaded"),
}
# Default `code` of an upstream's error that carries none, by status.
UPSTREAM_CODES = {429: "rate_limit_exceeded", 500: "upstream_error", 502: "upstream_error", 503: "overloaded",
                  504: "timeout", 529: "overloaded"}


def openai_error_type(status: int) -> tuple[str, str | None]:
    """(type, default code) for a status in the OpenAI envelope."""
    found = OPENAI_ERRORS.get(status)
    if found is not None:
        return found
    return ("server_error", None) if status >= 500 else ("invalid_request_error", None)


def openai_headers(request_id: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """`request-id` and `x-request-id` (openai-python reads the latter into `.request_id`)."""
    return {**(headers or {}), "request-id": request_id, "x-request-id": request_id}


def openai_error_response(
    status: int, message: str, request_id: str, *, error_type: str | None = None, code: str | None = None,
    param: str | None = None, headers: dict[str, str] | None = None,
) -> Response:
    """`{"error": {"message", "type", "code", "param"}}` with the error headers of `error_headers`
    plus `x-request-id`. Without `error_type`, the type and code come from `OPENAI_ERRORS`."""
    if error_type is None:
        error_type, default_code = openai_error_type(status)
        code = code if code is not None else default_code
    body = orjson.dumps({"error": {"message": message, "type": error_type, "code": code, "param": param}})
    return Response(body, status, headers=openai_headers(request_id, error_headers(status, request_id, headers)),
                    media_type=JSON)


def openai_refusal(refusal: Refusal, request_id: str, headers: dict[str, str] | None = None) -> Response:
    """A refusal in the OpenAI envelope. The type follows the status (`OPENAI_ERRORS`); the code
    is the refusal's own, else `insufficient_quota` for a refused budget (429 with
    `x-should-retry: false`, as OpenAI's own exhausted quota), else the status's default; a
    403/404 without a code or param of its own is about the `model`."""
    code, param = refusal.code, refusal.param
    if code is None and refusal.status == 429 and refusal.headers.get("x-should-retry") == "false":
        code = "insufficient_quota"
    if code is None and param is None and refusal.status in (403, 404):
        param = "model"
    return openai_error_response(refusal.status, refusal.message, request_id, code=code, param=param,
                                 headers={**refusal.headers, **(headers or {})})


def openai_upstream_error(reply: UpstreamReply, request_id: str) -> Response:
    """An upstream's error (an Anthropic envelope from any adapter) in the OpenAI envelope."""
    error: Any = None
    try:
        parsed = orjson.loads(reply.body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
    except orjson.JSONDecodeError:
        pass
    status = reply.status if reply.status >= 400 else 502
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return openai_error_response(status, f"the upstream answered HTTP {reply.status} without an error body",
                                     request_id, headers=reply.headers)
    code = error.get("code")
    param = error.get("param")
    return openai_error_response(
        status, error["message"], request_id,
        code=str(code) if isinstance(code, str | int) else UPSTREAM_CODES.get(status),
        param=param if isinstance(param, str) else None, headers=reply.headers,
    )
