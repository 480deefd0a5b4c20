"""What every REST API route goes through before its handler runs: the login (HTTP Basic), a bound on the body's
size (checked as it arrives, before it is parsed), and the user's mistakes (UserError) answered as 422 with the
message — never a 500, and the server goes on."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Callable

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from core.access import Credentials
from core.errors import UserError
from core.request import MAX_CONTROLNET_UNITS
from core.untrusted_images import MAX_UPLOAD_BYTES

log = logging.getLogger(__name__)

# An img2img body holds an image, a mask and a control image per unit, each base64 (4/3 of its bytes).
MAX_BODY_BYTES = (2 + MAX_CONTROLNET_UNITS) * MAX_UPLOAD_BYTES * 4 // 3 + 2**20


class BodyTooLarge(Exception):
    pass


def login_ok(header: str | None, credentials: Credentials | None) -> bool:
    """True when no login is required, or the Authorization header holds one of the logins (compared in constant
    time, every pair checked so the time says nothing about which user exists)."""
    if credentials is None:
        return True
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    matched = False
    for known_user, known_password in credentials:
        same_user = secrets.compare_digest(user.encode(), known_user.encode())
        same_password = secrets.compare_digest(password.encode(), known_password.encode())
        matched |= bool(sep) and same_user and same_password
    return matched


def guarded_route(credentials: Credentials | None, max_body: int = MAX_BODY_BYTES) -> type[APIRoute]:
    """An APIRoute class whose handler checks the login, then reads the body within `max_body` bytes."""

    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> Callable:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                if not login_ok(request.headers.get("authorization"), credentials):
                    return JSONResponse(
                        {"detail": "Login required (HTTP Basic: the --api-auth or the UI's login)."},
                        status_code=401,
                        headers={"WWW-Authenticate": 'Basic realm="SD Studio API"'},
                    )
                length = request.headers.get("content-length")
                if length and length.isdigit() and int(length) > max_body:
                    return _too_large(max_body)
                try:
                    return await handler(Request(request.scope, _bounded(request.receive, max_body)))
                except BodyTooLarge:
                    return _too_large(max_body)
                except UserError as exc:
                    return JSONResponse({"error": "UserError", "detail": str(exc)}, status_code=422)

            return guarded

    return GuardedRoute


def _bounded(receive: Callable, limit: int) -> Callable:
    seen = 0

    async def bounded_receive():
        nonlocal seen
        message = await receive()
        if message.get("type") == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return bounded_receive


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"The request body is over {limit // 2**20} MB."}, status_code=413)
