"""The API's documentation page (`/docs`, Swagger UI) without a CDN.

FastAPI's own page loads Swagger UI from a CDN, which nginx's Content-Security-Policy blocks and which
many company networks (and the project's machines) cannot reach, and it fetches `/openapi.json` from the
site's root, which behind nginx is Streamlit. Here the API serves Swagger UI's files itself (the
`swagger-ui-bundle-v2` package) and the page names them, and the schema, by relative URLs: the same page
works at the API's own port (`/docs`) and under the proxy's prefix (`/api/docs`). Behind the proxy the
schema names the prefix as its server (nginx's `X-Forwarded-Prefix`), so "Try it out" reaches the API.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
# a path prefix such as /api; anything else in the header is ignored
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


def add_docs(app: FastAPI) -> None:
    """`/docs`, `/openapi.json` and Swagger UI's files on `app` (created with docs_url, redoc_url and
    openapi_url set to None, so FastAPI adds its CDN page and its own schema route nowhere)."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        schema = app.openapi()
        prefix = request.headers.get("x-forwarded-prefix", "")
        if _PREFIX.match(prefix):
            schema = schema | {"servers": [{"url": prefix}]}
        return JSONResponse(schema)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        assets = ASSETS.lstrip("/")  # relative to the page: /docs → /docs/assets, /api/docs → /api/docs/assets
        return get_swagger_ui_html(openapi_url="openapi.json", title=f"{app.title} — docs",
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon-32x32.png")
