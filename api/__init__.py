"""The REST API front door: A1111's /sdapi/v1 routes and sd-webui-controlnet's /controlnet routes, with OpenAPI docs
at /docs, on the same FastAPI server as the Gradio UI (or alone with --nowebui). Runs no model: it builds the same
GenerationRequest the UI builds and hands it to the same queue and workers (core.services.Services.run_job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse

from api.generation import add_generation_routes
from api.guard import guarded_route
from api.listings import add_listing_routes
from core.access import Credentials
from core.services import Services

DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")  # served from swagger-ui-bundle


def build_api_router(services: Services, credentials: Credentials | None, flags: dict[str, Any]) -> APIRouter:
    """Every route of the API, each behind the login (when there is one) and the body bound."""
    router = APIRouter(route_class=guarded_route(credentials))
    add_generation_routes(router, services)
    add_listing_routes(router, services, flags)
    _add_docs(router)
    return router


def attach_api(app: FastAPI, router: APIRouter) -> None:
    """Adds the API's routes to a running app (Gradio's), ahead of the app's own so none of them can shadow ours
    (FastAPI's own /openapi.json among them, which would list Gradio's internals without a login)."""
    before = len(app.router.routes)
    app.include_router(router)
    ours = app.router.routes[before:]
    del app.router.routes[before:]
    app.router.routes[0:0] = ours


def api_only_app(router: APIRouter) -> FastAPI:
    """--nowebui: the API alone (FastAPI's docs switched off: ours are behind the login and work offline)."""
    app = FastAPI(title="SD Studio API", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router)
    return app


def _add_docs(router: APIRouter) -> None:
    """OpenAPI docs of these routes only, with Swagger UI served from the swagger-ui-bundle package (FastAPI's
    default page loads it from a CDN, which an offline studio cannot reach)."""
    import swagger_ui_bundle

    assets = Path(swagger_ui_bundle.swagger_ui_path)

    @router.get("/openapi.json", include_in_schema=False)
    def openapi():
        return get_openapi(title="SD Studio API (A1111-compatible)", version="1.10", routes=router.routes)

    @router.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="SD Studio API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    @router.get("/docs-assets/{name}", include_in_schema=False)
    def docs_asset(name: str):
        if name not in DOCS_ASSETS:  # a fixed list: no name a request sends can reach another file
            raise HTTPException(status_code=404)
        return FileResponse(assets / name)
