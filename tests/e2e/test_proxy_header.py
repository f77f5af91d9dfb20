"""Behind an authenticating proxy (SHELF_TRUSTED_USER_HEADER), on a real Streamlit server listening on every
address: the header counts on connections from the listed proxy (here this machine's loopback), and a browser that
reaches the port directly with the header forged gets nothing; without a list, nobody gets in."""
import re
import time

import pytest

from tests.conftest import require_service
from tests.e2e.conftest import Server

HEADER, ADMIN = "X-Forwarded-Email", "ana@example.com"


@pytest.fixture(scope="module")
def roles(tmp_path_factory):
    path = tmp_path_factory.mktemp("proxy") / "roles.toml"
    path.write_text(f'default = "viewer"\n[roles]\n"{ADMIN}" = "admin"\n')
    return path


def start(tmp_path_factory, weights_file, roles, **env) -> Server:
    return Server(tmp_path_factory.mktemp("proxy-data"), weights_file,
                  {"SHELF_ROLES_FILE": str(roles), "SHELF_TRUSTED_USER_HEADER": HEADER, **env})


def network_url(server: Server) -> str:
    """The server's address on this machine's network, as Streamlit prints it (a connection from there does not
    come from loopback)."""
    deadline = time.monotonic() + 30
    while not (found := re.search(r"Network URL: (http://[\d.]+:\d+)", server.log.read_text())):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    require_service(found is not None, "a network address besides loopback")
    return found[1]


def visit(browser, url: str, wait_for: str) -> str:
    """The page's text once `wait_for` shows, opened with the forged header on every request (the WebSocket too)."""
    context = browser.new_context(extra_http_headers={HEADER: ADMIN})
    try:
        page = context.new_page()
        page.goto(url)
        page.get_by_text(wait_for).first.wait_for(timeout=60_000)
        return page.inner_text("body")
    finally:
        context.close()


def test_the_header_counts_only_from_the_listed_proxy(browser, tmp_path_factory, weights_file, roles):
    server = start(tmp_path_factory, weights_file, roles, SHELF_TRUSTED_PROXIES="127.0.0.1")
    try:
        through_proxy = visit(browser, server.url, ADMIN)
        assert "Signed in as ana@example.com · admin" in through_proxy
        address = network_url(server)
        host = address.split("//")[1].split(":")[0]
        direct = visit(browser, address, "not from a trusted proxy")
        assert f"This session comes from {host}, not from a trusted proxy" in direct
        assert ADMIN not in direct and "API tokens" not in direct
    finally:
        server.stop()


def test_without_a_proxy_list_a_server_on_every_address_serves_nobody(browser, tmp_path_factory, weights_file,
                                                                       roles):
    server = start(tmp_path_factory, weights_file, roles)
    try:
        refused = visit(browser, server.url, "listens on every address")
    finally:
        server.stop()
    assert "Set SHELF_TRUSTED_PROXIES" in refused and "Signed in as" not in refused
