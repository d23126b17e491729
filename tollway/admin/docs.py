"""The admin API's interactive docs page (/admin/v1/docs), served without the internet.

FastAPI's default page loads Swagger UI from a CDN, which a gateway on a closed network cannot
reach. The assets come from the pinned `swagger-ui-bundle` package instead (installed with
Tollway) and are served beside the page.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"


def docs_page(request: Request, openapi_url: str) -> HTMLResponse:
    """The Swagger UI page, its assets and the document under the app's mount point."""
    # Under the gateway the admin app is mounted at /admin/v1: links carry that prefix.
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=root + openapi_url, title="Tollway admin API",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": True},
    )


def mount_assets(app: FastAPI) -> None:
    """Swagger UI's static files (public code, no data): served whether the page needs a key or not."""
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")


def add_docs(app: FastAPI, openapi_url: str) -> None:
    """Serve Swagger UI at /docs with its assets from the installed package."""
    mount_assets(app)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return docs_page(request, openapi_url)
