"""Path and query parameter types the admin routers share, and the error responses they document."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query

from tollway.admin.schemas import ErrorBody

# One line of text, no control characters: filters and references reach SQL text, and PostgreSQL
# refuses a NUL in a string outright (a 500 instead of the 422 a bad parameter deserves).
TEXT = r"^[^\x00-\x1f\x7f]+$"
PathRef = Annotated[str, PathParam(min_length=1, max_length=200, pattern=TEXT)]
Limit = Annotated[int, Query(ge=1, le=100, description="page size")]
Scope = Annotated[str, PathParam(pattern="^(key|user|group)$")]
After = Annotated[str | None, Query(max_length=200, pattern=TEXT, description="cursor: last id seen")]


def text_query(description: str | None = None) -> Any:
    """A bounded one-line text filter in the query string, documented as such in the OpenAPI. Empty is allowed,
    as it always was (an empty user, group or key filter is no filter)."""
    return Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", description=description)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in ((400, "malformed body"), (401, "no admin key or sign-in token"),
                       (403, "the caller's role may not do this"), (404, "not found"), (409, "conflict"),
                       (422, "invalid input"))
}
