"""Signing in to the viewer: a restricted layer appears for the role that may read it (issue 12).

The city is a writable copy of the built tiny city, with its own access rules and server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cim.access import AccessControl
from cim.audit import AuditLog

from .helpers import Server, ViewerPage, open_viewer, run_server

pytestmark = pytest.mark.browser

PASSWORD = "城市 planner passphrase"


@pytest.fixture
def guarded(city_copy: Path, tmp_path: Path) -> Iterator[tuple[Path, Server]]:
    acl = AccessControl.open(city_copy, create=True)
    acl.add_user("wang", role="planner", password=PASSWORD)
    acl.restrict("bim", ["planner"])
    with run_server(city_copy, tmp_path) as server:
        yield city_copy, server


def layer_ids(vp: ViewerPage) -> set[str]:
    return set(vp.page.evaluate("Object.keys(window.cim.layers)"))


def wait_layers(vp: ViewerPage) -> None:
    """Wait until the viewer has read city.json and added its layers (not for their tiles: a
    full ``wait_ready`` is kept for the signed-in view, whose restricted tiles must load)."""
    vp.page.wait_for_function(
        "() => window.cim && window.cim.city && Object.keys(window.cim.layers).length > 0", timeout=120_000, polling=100
    )
    assert vp.page.evaluate("window.cim.errors") == []


def sign_in(vp: ViewerPage, user: str, password: str) -> None:
    page = vp.page
    if page.locator("#login-form").is_hidden():
        page.click("#account-login")
    page.fill("#login-user", user)
    page.fill("#login-password", password)
    page.click("#login-form button[type=submit]")


def test_signing_in_shows_the_restricted_layer(browser: object, guarded: tuple[Path, Server], tmp_path: Path) -> None:
    city, server = guarded
    vp = open_viewer(browser, server.base_url, tmp_path)
    try:
        page = vp.page
        wait_layers(vp)
        assert "bim" not in layer_ids(vp) and "buildings" in layer_ids(vp)
        assert page.locator("#layer-bim").count() == 0
        assert page.is_visible("#account") and page.text_content("#account-user") == page.evaluate("window.cim.t('account.notSignedIn')")

        sign_in(vp, "wang", "not the password")
        page.wait_for_selector("#login-message:not([hidden])", timeout=10_000)
        assert page.evaluate("window.cim.t('account.wrongPassword')") in page.text_content("#login-message")

        with page.expect_navigation():
            sign_in(vp, "wang", PASSWORD)
        vp.wait_ready()
        assert {"bim", "buildings"} <= layer_ids(vp)
        assert page.locator("#layer-bim").count() == 1
        assert page.text_content("#account-user") == "wang (planner)"
        assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly

        with page.expect_navigation():
            page.click("#account-logout")
        wait_layers(vp)
        assert "bim" not in layer_ids(vp)
        # nothing failed: the 401 of the wrong password is the only refused request
        assert vp.log.page_errors == []
    finally:
        vp.page.close()
    logins = [(r["user"], r["status"]) for r in AuditLog(city).show(action="login")]
    assert logins == [("wang", 401), ("wang", 200)]


def test_a_closed_city_shows_only_its_sign_in(browser: object, guarded: tuple[Path, Server], tmp_path: Path) -> None:
    city, server = guarded
    AccessControl.open(city).set_anonymous(False)
    vp = open_viewer(browser, server.base_url, tmp_path)
    try:
        page = vp.page
        page.wait_for_selector("#login-form:not([hidden])", timeout=30_000)
        assert page.evaluate("window.cim.account.mayLoad") is False
        assert not any("/city/" in url for url in vp.log.requests)  # nothing of the city was asked for
        with page.expect_navigation():
            sign_in(vp, "wang", PASSWORD)
        vp.wait_ready()
        assert {"bim", "buildings", "lidar"} <= layer_ids(vp)
    finally:
        vp.page.close()
