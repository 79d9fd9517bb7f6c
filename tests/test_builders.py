"""The shared test infrastructure builds real things: packages rattler reads, a server that serves."""

from __future__ import annotations

import requests
from conftest import Channel, HttpServer


def test_http_server_serves_records_and_fails(http_server: HttpServer) -> None:
    (http_server.root / "a.txt").write_text("hello")
    http_server.fail("/b.txt", 500, times=1)
    (http_server.root / "b.txt").write_text("b")
    assert requests.get(f"{http_server.url}/a.txt", timeout=5).text == "hello"
    assert requests.get(f"{http_server.url}/b.txt", timeout=5).status_code == 500
    assert requests.get(f"{http_server.url}/b.txt", timeout=5).text == "b"
    assert requests.get(f"{http_server.url}/missing", timeout=5).status_code == 404
    assert http_server.requests == ["/a.txt", "/b.txt", "/b.txt", "/missing"]


def test_http_server_basic_auth(http_server: HttpServer) -> None:
    (http_server.root / "a.txt").write_text("secret")
    http_server.require_auth("user", "pass")
    assert requests.get(f"{http_server.url}/a.txt", timeout=5).status_code == 401
    assert requests.get(f"{http_server.url}/a.txt", auth=("user", "pass"), timeout=5).text == "secret"


def test_served_channel(served_channel: str, channel: Channel) -> None:
    repodata = requests.get(f"{served_channel}/linux-64/repodata.json", timeout=5).json()
    assert set(repodata["packages.conda"]) == {"hello-1.2.3-h0_0.conda"}
    assert requests.get(f"{served_channel}/noarch/repodata.json", timeout=5).ok
