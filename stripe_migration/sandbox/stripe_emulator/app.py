"""The emulator's ASGI app: Stripe's v1 API under ``/v1`` (``pipeline.py``), control endpoints
under ``/_emulator``.

Control endpoints need no key (the emulator is meant for loopback only): ``GET /_emulator/health``,
``GET /_emulator/stats``, ``POST /_emulator/reset`` (optional JSON ``{"keep_config": true}``;
otherwise the config the app was created with is restored), ``GET``/``POST /_emulator/config``
(JSON settings to change, see :class:`EmulatorConfig`), ``GET /_emulator/objects/{type}`` with type
``product``, ``price`` or ``event`` (oldest first), and the scripted faults: ``POST
/_emulator/faults`` (JSON ``{"method": "POST", "path": "/v1/prices", "status": 500, "phase":
"after_commit", "count": 1}``, or an ``idempotency_key`` instead of or with the path; see
:class:`~.faults.ScriptedFaults`) arms one and answers it with its ``id``, ``GET
/_emulator/faults`` lists those still armed, ``DELETE /_emulator/faults`` disarms them all (so does
a reset).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .config import EmulatorConfig
from .pipeline import Emulator


class EmulatorApp(Starlette):
    """The Starlette app, with API requests sent straight to :meth:`Emulator.handle_api`."""

    emulator: Emulator

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Serve API requests on the raw ASGI path (``send`` stays uvicorn's own callable)."""
        if scope["type"] == "http" and not scope["path"].startswith("/_emulator/"):
            await self.emulator.handle_api(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _apply_json(
    request: Request, what: str, action: Callable[[dict[str, Any]], Any]
) -> JSONResponse:
    """Answer ``action(body)`` for a JSON object body, or a 400 naming what is wrong with it
    (``what`` says what the object describes) or what ``action`` refused (a ValueError or
    TypeError)."""
    try:
        body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            raise ValueError(f"the body must be a JSON object {what}")
        result = action(body)
    except (ValueError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(result)


def _control_routes(emulator: Emulator) -> list[Route]:
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(emulator.stats_snapshot())

    async def reset(request: Request) -> JSONResponse:
        body = await request.body()
        options = json.loads(body) if body.strip() else {}
        emulator.reset(keep_config=bool(options.get("keep_config", False)))
        return JSONResponse({"ok": True, "config": emulator.config.public_dict()})

    async def get_config(request: Request) -> JSONResponse:
        return JSONResponse(emulator.config.public_dict())

    async def set_config(request: Request) -> JSONResponse:
        return await _apply_json(
            request, "of settings", lambda changes: emulator.configure(changes).public_dict()
        )

    async def list_faults(request: Request) -> JSONResponse:
        return JSONResponse(emulator.scripted_faults.snapshot())

    async def add_fault(request: Request) -> JSONResponse:
        return await _apply_json(
            request,
            "describing the fault",
            lambda spec: dataclasses.asdict(emulator.scripted_faults.add(spec)),
        )

    async def clear_faults(request: Request) -> JSONResponse:
        emulator.scripted_faults.clear()
        return JSONResponse({"ok": True})

    async def objects(request: Request) -> JSONResponse:
        kind = request.path_params["kind"].rstrip("s")
        try:
            table = emulator.state.table(kind)
        except KeyError:
            return JSONResponse(
                {"error": f"unknown object type {kind!r}: use product, price or event"},
                status_code=404,
            )
        return JSONResponse(table.all())

    return [
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/config", get_config, methods=["GET"]),
        Route("/_emulator/config", set_config, methods=["POST"]),
        Route("/_emulator/faults", list_faults, methods=["GET"]),
        Route("/_emulator/faults", add_fault, methods=["POST"]),
        Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
        Route("/_emulator/objects/{kind}", objects, methods=["GET"]),
    ]


def create_app(config: EmulatorConfig | None = None) -> EmulatorApp:
    """Build the emulator's ASGI app (webhook delivery starts with the app's lifespan)."""
    emulator = Emulator(config or EmulatorConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await emulator.webhooks.start()
        try:
            yield
        finally:
            await emulator.webhooks.stop()

    app = EmulatorApp(routes=_control_routes(emulator), lifespan=lifespan)
    app.emulator = emulator
    return app
