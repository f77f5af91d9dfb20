"""Whom the dashboard believes about who the user is, behind an authenticating proxy.

With SHELF_TRUSTED_USER_HEADER set, a proxy in front of Streamlit signs users in and passes each one's e-mail in that
header. Anyone who reaches Streamlit's port directly could send the header too, so it counts only on connections
from the proxy's own addresses: SHELF_TRUSTED_PROXIES (addresses or networks, comma-separated; default this machine's
loopback). With no list, a server that listens beyond loopback serves nobody: the operator must say where the proxy is.

Streamlit's server (uvicorn) replaces a connection's address by its X-Forwarded-For header when the connection comes
from FORWARDED_ALLOW_IPS (default 127.0.0.1,::1, or "*" for everyone): those addresses may claim any other, so they
must be trusted proxies themselves (or this machine, whose processes could read the store anyway). Pure functions of
the settings and addresses; shelf.serving.ui applies them to every session before reading the header.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping

PROXIES_ENV = "SHELF_TRUSTED_PROXIES"
FORWARDED_ENV = "FORWARDED_ALLOW_IPS"  # read by uvicorn when Streamlit starts it
LOOPBACK = "127.0.0.0/8,::1"
UVICORN_FORWARDERS = "127.0.0.1,::1"  # uvicorn's default for FORWARDED_ALLOW_IPS

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(text: str, setting: str = PROXIES_ENV) -> list[Network]:
    """'10.0.0.5, 10.1.0.0/16, ::1' → networks; ValueError naming the setting and an entry that is neither."""
    found = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        try:
            found.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{setting}: {entry!r} is neither an IP address nor a network (such as 10.0.0.0/8)"
                             ) from None
    return found


def trusted_proxies(environ: Mapping[str, str]) -> list[Network]:
    return networks(environ.get(PROXIES_ENV, "").strip() or LOOPBACK)


def plain(address: str) -> str:
    """An address as people write it: IPv4 over a dual-stack socket comes IPv6-mapped (::ffff:10.0.0.5)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    return str(getattr(parsed, "ipv4_mapped", None) or parsed)


def within(address: str, proxies: list[Network]) -> bool:
    """Whether `address` is one of `proxies`."""
    try:
        parsed = ipaddress.ip_address(plain(address))
    except ValueError:
        return False
    return any(parsed in network for network in proxies)


def listens_publicly(server_address: str | None) -> bool:
    """Whether Streamlit's `server.address` reaches beyond this machine (unset: every interface)."""
    if not server_address:
        return True
    if server_address == "localhost":
        return False
    try:
        return not ipaddress.ip_address(server_address).is_loopback
    except ValueError:
        return True  # a host name: reachable from elsewhere, as far as Shelf can tell


def _covered(forwarder: Network, proxies: list[Network]) -> bool:
    """A forwarder on loopback is a process on this machine, which could read the store anyway."""
    return forwarder.is_loopback or any(forwarder.version == proxy.version and forwarder.subnet_of(proxy)
                                        for proxy in proxies)


def setup_problem(environ: Mapping[str, str], server_address: str | None, header: str) -> str | None:
    """Why, with these settings, no session may take its user from `header` (None: sessions from the proxies may)."""
    if not environ.get(PROXIES_ENV, "").strip() and listens_publicly(server_address):
        return (f"Shelf takes its users from the {header} header, and this server listens on "
                f"{server_address or 'every address'}: anyone who reaches its port could send that header. Set "
                f"{PROXIES_ENV} to your proxy's addresses, or start Streamlit with --server.address 127.0.0.1 "
                "behind a proxy on this machine.")
    try:
        proxies = trusted_proxies(environ)
        forwarders = environ.get(FORWARDED_ENV, UVICORN_FORWARDERS).strip()
        if forwarders == "*" or not all(_covered(f, proxies) for f in networks(forwarders, FORWARDED_ENV)):
            return (f"{FORWARDED_ENV} is {forwarders!r}: Streamlit's server lets connections from there claim "
                    f"any address with X-Forwarded-For, a proxy's too. List only trusted proxies ({PROXIES_ENV}) "
                    "there, or set it empty.")
    except ValueError as exc:
        return str(exc)
    return None


def session_problem(environ: Mapping[str, str], peer: str | None, forwarded_for: str | None) -> str | None:
    """Why this session may not take its user from the header: it did not come from a trusted proxy. `peer`:
    Streamlit's address of the connection (None for loopback, as `st.context.ip_address` gives it)."""
    address = plain(peer or "127.0.0.1")
    if within(address, trusted_proxies(environ)):
        return None
    problem = f"This session comes from {address}, not from a trusted proxy ({PROXIES_ENV}): open Shelf through it."
    if forwarded_for:
        problem += (f" If your proxy sends X-Forwarded-For, Streamlit's server took this address from it: start "
                    f"Streamlit with {FORWARDED_ENV}= (empty) to keep the proxy's own.")
    return problem


def header_problem(environ: Mapping[str, str], server_address: str | None, header: str, context) -> str | None:
    """Why this session may not take its user from `header`, or None. `context`: `st.context` (its ip_address and
    headers), read only when the settings allow the header at all."""
    return setup_problem(environ, server_address, header) or \
        session_problem(environ, context.ip_address, context.headers.get("X-Forwarded-For"))
