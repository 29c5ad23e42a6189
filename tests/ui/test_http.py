"""The status page over HTTP against a real daemon: pages, read-only, escaping, secrets."""

from __future__ import annotations

import re
import threading
import time

import httpx

from daemon.helpers import wait_until, write_atomic
from ui.conftest import XSS, World

PAGES = ("/ui/", "/ui/connections", "/ui/plan", "/ui/connections/shopware-de")


def test_every_page_answers_and_deep_links_work(world: World) -> None:
    for path in PAGES:
        response = world.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
    overview = world.get("/ui/").text
    assert "Needs attention" in overview and "Last reconciles" in overview
    assert "amazon-de" in overview  # awaiting authorization: a person's step
    detail = world.get("/ui/connections/sfcc-eu").text
    assert "sfcc-eu.yaml:" in detail  # the manifest file and line
    assert "spec.ignoreDifferences" in detail and "/settings/priceBooks" in detail
    assert world.get("/ui", follow_redirects=False).status_code in (301, 307, 308)
    missing = world.get("/ui/connections/no-such-thing")
    assert missing.status_code == 404 and "no-such-thing" in missing.text


def test_the_list_filters_and_shows_unmanaged_connections(world: World) -> None:
    listing = world.get("/ui/connections", params={"kind": "unmanaged"}).text
    assert "legacy-shop" in listing and "shopware-de" not in listing
    (href,) = re.findall(r'href="(/ui/unmanaged/\d+)"', listing)
    assert "legacy-shop" in world.get(href).text
    emea = world.get("/ui/connections", params={"label": "team=emea", "driver": "sfcc"}).text
    assert "sfcc-eu" in emea and "shopware-de" not in emea
    waiting = world.get("/ui/connections", params={"condition": "AwaitingAuthorization"}).text
    assert "amazon-de" in waiting and "sfcc-eu" not in waiting


def test_no_route_changes_anything(world: World) -> None:
    before = world.get("/status").json()["connections"]
    paths = [*PAGES, "/ui/live", "/ui/static/ui.js", "/ui/unmanaged/1", "/ui/connections/x"]
    for path in paths:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = world.request(method, path, content=b"{}")
            assert response.status_code == 405, (method, path, response.status_code)
    assert world.request("HEAD", "/ui/").status_code == 200
    after = world.get("/status").json()["connections"]
    assert [c["observed"] for c in after] == [c["observed"] for c in before]


def test_manifest_text_is_escaped_and_inline_script_is_forbidden(world: World) -> None:
    for path in ("/ui/connections/xss-shop", "/ui/connections?q=xss", "/ui/plan"):
        response = world.get(path)
        html = response.text
        assert XSS not in html, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        # Every script the page has is a file of its own origin: nothing inline.
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/ui/static/ui.js" defer>']
    detail = world.get("/ui/connections/xss-shop").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail  # display name and label
    assert detail.count("&lt;script&gt;") >= 2


def read_stream(world: World, seconds: float, into: list[bytes], until: bytes = b"") -> None:
    """Read /ui/live into `into` for `seconds`, or until `until` has been read."""
    try:
        with httpx.stream("GET", world.base + "/ui/live", timeout=seconds + 5) as response:
            deadline = time.monotonic() + seconds
            for chunk in response.iter_bytes():
                into.append(chunk)
                if time.monotonic() > deadline or (until and until in b"".join(into)):
                    return
    except httpx.HTTPError:
        return


def test_no_secret_reaches_a_page_or_the_stream(world: World) -> None:
    stream: list[bytes] = []
    reader = threading.Thread(target=read_stream, args=(world, 10.0, stream, b"event: change"))
    reader.start()
    wait_until(lambda: stream, timeout=5, what="the stream's hello")
    # An edit while the stream is open: its events go by on the stream too.
    edited = world.root / "shopware-de.yaml"
    write_atomic(edited, edited.read_text().replace("Shopware DE", "Shopware DE edited"))
    pages = [*PAGES, "/ui/connections?size=500", "/ui/static/ui.js", "/ui/static/ui.css"]
    listing = world.get("/ui/connections?size=500").text
    pages += sorted(set(re.findall(r'href="(/ui/(?:connections|unmanaged)/[^"?]+)"', listing)))
    assert len(pages) > 15
    bodies = {}
    for path in pages:
        response = world.get(path)
        assert response.status_code == 200, path
        bodies[path] = response.text
    reader.join()
    bodies["/ui/live"] = b"".join(stream).decode()
    assert "event: hello" in bodies["/ui/live"]
    assert "(sensitive value)" in bodies["/ui/connections/literal-shop"]
    for secret in world.secrets:
        leaked = [path for path, text in bodies.items() if secret in text]
        assert not leaked, f"secret {secret[:8]}... on {leaked}"


def test_the_stream_says_when_something_changed(world: World) -> None:
    stream: list[bytes] = []
    reader = threading.Thread(target=read_stream, args=(world, 10.0, stream, b"event: change"))
    reader.start()
    wait_until(lambda: stream, timeout=5, what="the stream's hello")
    edited = world.root / "tradebyte.yaml"
    text = edited.read_text()
    write_atomic(edited, text.replace("displayName:", "displayName: Live", 1))
    wait_until(lambda: b"event: change" in b"".join(stream), timeout=5, what="a change")
    reader.join()
    (announced,) = re.findall(rb"event: change\ndata: (\d+) ", b"".join(stream))[:1]
    # The live script's fetch names the version the stream announced: the answer shows
    # it (or later), however soon after the last rebuild it comes.
    want = {"X-Chanops-Want": announced.decode()}
    for path in ("/ui/", "/ui/connections", "/ui/connections/tradebyte-main"):
        shown = re.search(r'data-version="(\d+)"', world.get(path, headers=want).text)
        assert shown is not None and int(shown[1]) >= int(announced), path
    for bogus in (b"\xb2", b"9" * 40, b"-1", b""):  # not a version: no wait, no error
        response = world.get("/ui/", headers={"X-Chanops-Want": bogus})
        assert response.status_code == 200, bogus


def test_a_manifest_that_fails_to_load_shows_as_frozen(world: World) -> None:
    """The banner says so, needs attention names the file and line, and the file's
    connection is frozen in the list; fixed, the banner goes back."""
    broken = world.root / "bigcommerce.yaml"
    text = broken.read_text()
    write_atomic(broken, text.replace("variantOptionType: dropdown", "variantOptionType: 42"))
    try:
        wait_until(
            lambda: "Frozen manifests" in world.get("/ui/").text, timeout=15, what="the banner"
        )
        attention = world.get("/ui/").text.split('id="attention"')[1]
        assert re.search(r"bigcommerce\.yaml:\d+:\d+", attention), attention[:500]
        assert "variantOptionType" in attention and "bigcommerce-us" in attention
        frozen = world.get("/ui/connections", params={"state": "frozen"}).text
        assert "bigcommerce-us" in frozen and "shopware-de" not in frozen
    finally:
        write_atomic(broken, text)
    wait_until(lambda: "Frozen manifests" not in world.get("/ui/").text, timeout=15, what="fixed")
