"""Browser tests: real Chromium (Debian's) against a real uvicorn serving fleetweb (ASGI, websockets)."""

import os
from pathlib import Path

import pytest

from tests.processes import ROOT, web_server

CHROMIUM = os.environ.get("FLEET_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "screenshots"


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and no Chromium at {CHROMIUM}: browser tests must run")
        pytest.skip(f"no Chromium at {CHROMIUM} (./fleet test installs it when run as root)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 900}, "timezone_id": "Europe/Berlin",
            "locale": "en-GB"}


@pytest.fixture
def app_server(transactional_db):
    """uvicorn serving fleetweb on a free loopback port, on the test database; yields its base URL."""
    with web_server(kind="uvicorn", name="browser", FLEET_POLL_INTERVAL_S="60") as url:
        yield url


def login(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
