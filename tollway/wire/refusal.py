"""`Refusal`: the one type every refusal is, whoever raises it.

A refusal is an answer the gateway gives instead of (or on behalf of) the upstream's: a request
that fails validation, a key that may not use a model, a limit, an upstream that could not be
reached. Each carries what any dialect needs to render it (status, type, message, OpenAI's
`code` and `param`, extra headers such as `retry-after`), so a surface has one renderer per
dialect (`Dialect.render_error`) instead of one branch per exception class, and the pipeline
books every refusal the same way. Pure: nothing of ours imported.
"""

from __future__ import annotations


class Refusal(Exception):
    """An error answer. `error_type` None means "the dialect's usual type for `status`"."""

    def __init__(self, status: int, message: str, error_type: str | None = None,
                 headers: dict[str, str] | None = None, *, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.headers = headers or {}
        self.code = code
        self.param = param

    @property
    def type(self) -> str | None:
        return self.error_type
