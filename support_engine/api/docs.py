"""The API docs at ``/docs``: Swagger UI from the files of the ``swagger-ui-bundle`` package, nothing from a CDN.

The packaged Swagger UI (4.x) reads OpenAPI 3.0 only, while FastAPI writes 3.1; the page reads
``/docs/openapi.json``, the same document said in 3.0 (a nullable field is ``nullable: true``
rather than ``anyOf`` with ``type: 'null'``). ``/openapi.json`` stays FastAPI's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped,unused-ignore]

__all__ = ["ASSETS", "add_docs", "as_openapi_30"]

ASSETS = "/docs/assets"
_SPEC = "/docs/openapi.json"


def as_openapi_30(node: Any) -> Any:
    """An OpenAPI 3.1 document (or part of one) as 3.0 says it: nullables, and the version."""
    if isinstance(node, list):
        return [as_openapi_30(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: as_openapi_30(v) for k, v in node.items()}
    if out.get("openapi", "").startswith("3.1"):
        out["openapi"] = "3.0.3"
    choices = out.get("anyOf")
    if isinstance(choices, list) and {"type": "null"} in choices:
        rest = [c for c in choices if c != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out = {**rest[0], **out}
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    return out


def add_docs(app: FastAPI, *, favicon: str) -> None:
    """Serve Swagger UI at ``/docs`` with its files at :data:`ASSETS` (``favicon``: the icon's path)."""
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    @app.get(_SPEC, include_in_schema=False)
    def spec() -> JSONResponse:
        return JSONResponse(as_openapi_30(app.openapi()))

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> HTMLResponse:
        root: str = request.scope.get("root_path", "")
        parameters: dict[str, Any] = {"validatorUrl": None}  # no badge from validator.swagger.io
        return get_swagger_ui_html(
            openapi_url=f"{root}{_SPEC}",
            title=f"{app.title}: API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{favicon}",
            swagger_ui_parameters=parameters,
        )
