"""Error bodies as the API sends them, declared in the OpenAPI schema for every route.

Every 4xx/5xx body is `{"detail": "<field>: <what is wrong>"}`; a 422 adds `errors`, one
entry per invalid field. `ERROR_RESPONSES` is attached to every router (api.app), so a
client generated from the schema knows each status it can meet.
"""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    detail: str


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class ValidationErrorBody(BaseModel):
    detail: str
    errors: list[FieldError]


def _error(description: str, model: type[BaseModel] = ErrorBody) -> dict:
    return {"model": model, "description": description}


ERROR_RESPONSES: dict[int | str, dict] = {
    400: _error(
        "malformed request (bad JSON, a name that is not allowed, a value the database cannot hold)"
    ),
    401: _error("no credentials: send Authorization: Bearer KEY"),
    403: _error("wrong credentials, or a disabled device"),
    404: _error("no such job, candidate, device, task or artifact"),
    409: _error(
        "conflicts with the current state (a lease this device does not hold, a "
        "cancelled task, a lease cap reached)"
    ),
    413: _error("body larger than the server's max_body_bytes"),
    422: _error("a field is invalid: `detail` names it", ValidationErrorBody),
    429: _error("too many enrollment attempts from this address; see Retry-After"),
    503: _error("the database is unavailable; retry after Retry-After seconds"),
}
