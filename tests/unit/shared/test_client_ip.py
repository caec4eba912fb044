"""Which address the local gateway believes is the client (issue #14, item 8)."""

from __future__ import annotations

from functions.local.gateway import client_ip


def test_forwarding_headers_are_ignored_without_trusted_proxies() -> None:
    assert client_ip("127.0.0.1", "203.0.113.9", []) == "127.0.0.1"


def test_a_trusted_proxy_passes_the_client_on() -> None:
    assert client_ip("10.0.0.2", "198.51.100.7, 10.0.0.1", ["10.0.0.0/24"]) == "198.51.100.7"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert client_ip("192.0.2.50", "1.2.3.4", ["10.0.0.0/24"]) == "192.0.2.50"


def test_a_spoofed_left_entry_is_not_believed() -> None:
    # The client sent "X-Forwarded-For: 1.1.1.1"; the trusted proxy appended the real address.
    assert client_ip("10.0.0.2", "1.1.1.1, 198.51.100.7", ["10.0.0.0/24"]) == "198.51.100.7"


def test_malformed_chains_fall_back_to_the_peer() -> None:
    assert client_ip("10.0.0.2", "not-an-ip", ["10.0.0.0/24"]) == "10.0.0.2"
