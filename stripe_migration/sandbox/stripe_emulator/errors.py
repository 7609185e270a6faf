"""Stripe's error shape: ``{"error": {"type", "code", "param", "message", ...}}`` with a status."""

from __future__ import annotations

from collections.abc import Mapping

from stripe_migration.sandbox.http_error import HttpError

DOC_BASE = "https://stripe.com/docs/error-codes/"


class ApiError(HttpError):
    """An API error, rendered by the app as Stripe renders it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.type, self.code, self.param = type, code, param

    def body(self) -> dict:
        """The JSON body Stripe would send for this error."""
        err: dict[str, object] = {"message": self.message, "type": self.type}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = DOC_BASE + self.code.replace("_", "-")
        if self.param is not None:
            err["param"] = self.param
        return {"error": err}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 ``invalid_request_error``."""
    return ApiError(400, message, code=code, param=param)


def missing_resource(kind: str, object_id: str, param: str = "id", status: int = 404) -> ApiError:
    """Stripe's ``resource_missing`` error: ``No such product: 'prod_x'``."""
    return ApiError(status, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)
