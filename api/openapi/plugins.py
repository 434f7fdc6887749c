"""Serving the contract: ``/schema/openapi.json`` and the Swagger UI at ``/schema``, with no CDN.

Litestar hands every OpenAPI render plugin the document it generated; these plugins render the
published contract (api/openapi/document.py) instead. The UI's script and style files come from
the installed ``swagger-ui-py`` package and are served by this host under ``/schema/assets/``,
so the page works on a machine without internet access.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.enums import MediaType
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.params import FromPath
from litestar.router import Router

from api.openapi.document import build_contract

ASSETS_PATH = "/assets"
# The files the page loads, and their media types; nothing else of the package is served.
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


class Contract:
    """The published document of one app, built once on first use."""

    def __init__(self) -> None:
        self._document: dict[str, Any] | None = None

    def document(self, app: Litestar, base: dict[str, Any]) -> dict[str, Any]:
        if self._document is None:
            self._document = build_contract(app, base)
        return self._document


class ContractJsonPlugin(JsonRenderPlugin):
    """``/schema/openapi.json``: the published contract."""

    def __init__(self, contract: Contract) -> None:
        super().__init__()
        self.contract = contract

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, self.contract.document(request.app, openapi_schema))


@get(f"{ASSETS_PATH}/{{name:str}}", include_in_schema=False, sync_to_thread=False, cache=3600)
def swagger_asset(name: FromPath[str]) -> Response[bytes]:
    """One file of the Swagger UI, from the installed package."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFoundException()
    content = files("swagger_ui").joinpath("static", name).read_bytes()
    return Response(content, media_type=media_type)


class OfflineSwaggerPlugin(SwaggerRenderPlugin):
    """Swagger UI for the contract, its assets served by this host."""

    def __init__(self, contract: Contract, *, schema_path: str, path: str = "/swagger") -> None:
        assets = f"{schema_path.rstrip('/')}{ASSETS_PATH}"
        super().__init__(
            js_url=f"{assets}/swagger-ui-bundle.js",
            css_url=f"{assets}/swagger-ui.css",
            standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{assets}/favicon-32x32.png'>",
            path=path,
            media_type=MediaType.HTML,
        )
        self.contract = contract

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, self.contract.document(request.app, openapi_schema))

    def receive_router(self, router: Router) -> None:
        router.register(swagger_asset)
