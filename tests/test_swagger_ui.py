"""Swagger UI in a real browser: /docs works offline, and its Authorize dialog and "Try it out" reach the API.

Headless Chromium (Debian's `chromium` package at /usr/bin/chromium, driven by Playwright;
no browser download) opens /docs on a live uvicorn server, logs in through the Authorize
dialog (OAuth2 password flow, email as the username), runs GET /posts/ from the page and
reads the 200 and the post in the rendered response. Every request the page makes must
stay on the server under test: the docs must not depend on a CDN.

Skipped only when Chromium or the playwright package is missing (CI installs both).
"""

import contextlib
import re
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from conftest import Account
from fastapi.testclient import TestClient

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium), as .ci/run does",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is missing: pip install -r requirements-dev.txt"
)
if TYPE_CHECKING:  # the names for annotations (the module itself may be missing at run time)
    from playwright.sync_api import ConsoleMessage, Page, Route

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_TIMEOUT_MS = 10_000

pytestmark = pytest.mark.timeout(60)


def assert_docs_are_self_hosted(base_url: str) -> None:
    """Fail clearly, before starting a browser, when /docs still loads Swagger UI from elsewhere."""
    with urllib.request.urlopen(f"{base_url}/docs", timeout=10) as response:
        assert response.status == 200
        html = response.read().decode()
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    foreign = [url for url in assets if urlsplit(url).netloc not in ("", urlsplit(base_url).netloc)]
    if foreign or not assets:
        pytest.fail(
            f"/docs loads Swagger UI from outside the server ({foreign or 'no assets at all'}), so on a closed "
            "network the page stays blank. Build the app with FastAPI(..., docs_url=None) and call "
            "app.docs.mount_docs(app) in app.main.create_app()."
        )


def test_swagger_ui_authorizes_and_lists_posts(
    live_server: str, client: TestClient, make_account: Callable[..., Account], tmp_path: Path
) -> None:
    account = make_account()
    title = f"Seen through Swagger UI {uuid.uuid4().hex[:8]}"
    created = client.post("/posts/", json={"title": title, "content": "from the browser test"}, headers=account.headers)
    assert created.status_code == 201, created.text
    assert_docs_are_self_hosted(live_server)

    origin = urlsplit(live_server).netloc
    foreign_requests: list[str] = []
    page_errors: list[str] = []
    console_errors: list[str] = []

    def keep_it_local(route: "Route") -> None:
        if urlsplit(route.request.url).netloc == origin:
            route.continue_()
        else:
            foreign_requests.append(route.request.url)
            route.abort()

    def note_console_error(message: "ConsoleMessage") -> None:
        if message.type == "error":
            console_errors.append(message.text)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            context = browser.new_context()
            context.route("**/*", keep_it_local)
            page = context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.on("console", note_console_error)
            try:
                drive_swagger_ui(page, live_server, account, title)
            except (AssertionError, sync_api.Error) as error:
                screenshot = tmp_path / "swagger-ui-failure.png"
                with contextlib.suppress(sync_api.Error):
                    page.screenshot(path=screenshot, full_page=True)
                raise AssertionError(
                    f"{error}\n(screenshot: {screenshot}; outside requests: {foreign_requests}; "
                    f"page errors: {page_errors}; console errors: {console_errors})"
                ) from error
        finally:
            browser.close()

    assert foreign_requests == [], "the docs page reached outside the server under test"
    assert page_errors == [], "Swagger UI raised errors in the page"
    assert console_errors == [], "the browser console reported errors (a blocked asset, a content security policy...)"


def drive_swagger_ui(page: "Page", base_url: str, account: Account, title: str) -> None:
    """What a person does: open the docs, Authorize, then Try it out and Execute on GET /posts/."""
    expect = sync_api.expect
    page.goto(f"{base_url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Agora")

    # The Authorize dialog: OAuth2 password flow, the email in the username field.
    page.locator(".swagger-ui .auth-wrapper .authorize").click()
    dialog = page.locator(".swagger-ui .dialog-ux .modal-ux")
    expect(dialog).to_be_visible()
    dialog.locator("#oauth_username").fill(account.email)
    dialog.locator("#oauth_password").fill(account.password)
    with page.expect_response(lambda response: urlsplit(response.url).path == "/login") as login:
        dialog.locator("button.authorize", has_text="Authorize").click()
    assert login.value.status == 200, f"the dialog's login failed: {login.value.status} {login.value.text()}"
    expect(dialog.locator("button", has_text="Logout")).to_be_visible()
    dialog.locator(".btn-done").click()
    expect(dialog).to_be_hidden()

    # GET /posts/: expand it, Try it out, Execute.
    operation = page.locator(".opblock.opblock-get").filter(has=page.locator('[data-path="/posts/"]'))
    expect(operation).to_have_count(1)
    operation.locator(".opblock-summary-control").click()
    operation.locator("button.try-out__btn", has_text="Try it out").click()
    with page.expect_response(
        lambda response: urlsplit(response.url).path == "/posts/" and response.request.method == "GET"
    ) as listed:
        operation.locator("button.execute", has_text="Execute").click()

    # What went over the wire: the dialog's token, a 200, our post.
    assert listed.value.status == 200, listed.value.text()
    token = login.value.json()["access_token"]
    assert listed.value.request.headers.get("authorization") == f"Bearer {token}"
    assert title in [item["Post"]["title"] for item in listed.value.json()]

    # What the page shows.
    live = operation.locator(".live-responses-table")
    expect(live.locator(".response .response-col_status")).to_have_text("200")
    expect(live.locator(".response .response-col_description")).to_contain_text(title)
