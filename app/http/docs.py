"""Swagger UI served by the API itself: /docs works with no CDN.

FastAPI's default /docs page loads Swagger UI's JavaScript and CSS from a public CDN, so
on a closed network (or behind a strict egress policy) it stays blank. Here the assets
come from the pinned `fastapi-offline` package (requirements.txt; it ships Swagger UI's
dist files and depends on nothing but FastAPI) and this process serves them under
/docs/static. The app must be built with `docs_url=None`, so that FastAPI's own
CDN-based page does not shadow this one.

Like every path of the API, /docs, its OAuth2 redirect page and the OpenAPI document answer
with and without a trailing slash (no redirect: the app has `redirect_slashes=False`).
"""

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

from app.api.routing import slash_twin

DOCS_URL = "/docs"
ASSETS_URL = f"{DOCS_URL}/static"
ASSETS = files("fastapi_offline") / "static"
ASSET_NAMES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")


def mount_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs (and its OAuth2 redirect page) from local files."""
    if app.docs_url is not None:
        raise ValueError("build the app with FastAPI(docs_url=None): its own /docs page loads Swagger UI from a CDN")
    if app.openapi_url is None:
        return  # no schema, nothing to show
    # A package upgrade that moved the files would otherwise show up as a blank page.
    missing = [name for name in ASSET_NAMES if not (ASSETS / name).is_file()]
    if missing:
        raise RuntimeError(f"Swagger UI assets missing from {ASSETS}: {missing}")
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS)), name="swagger-ui-assets")
    openapi_url = app.openapi_url
    redirect_url = app.swagger_ui_oauth2_redirect_url or f"{DOCS_URL}/oauth2-redirect"

    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a path prefix, every URL the page loads needs it back.
        prefix = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=prefix + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{prefix}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{prefix}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{prefix}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=prefix + redirect_url,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    async def oauth2_redirect(_request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    for path, endpoint in ((DOCS_URL, swagger_ui), (redirect_url, oauth2_redirect)):
        app.add_route(path, endpoint, include_in_schema=False)
        app.add_route(slash_twin(path), endpoint, include_in_schema=False)
    # FastAPI serves the document itself (added when the app was built); its twin serves it too.
    (document,) = [route for route in app.router.routes if isinstance(route, Route) and route.path == openapi_url]
    app.add_route(slash_twin(openapi_url), document.endpoint, include_in_schema=False)
