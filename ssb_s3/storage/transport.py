"""How ssb_s3 reaches a server: the CA bundle it trusts, the proxy it goes through, its pooled
connections (urllib3), and what a failure to reach the server means, in one line.

Invariants:

- CA bundle, in the AWS tools' order: `--ca-bundle` (`set_ca_bundle`), then AWS_CA_BUNDLE, then
  REQUESTS_CA_BUNDLE, then SSL_CERT_FILE, then the system's store. The first one set is the only one
  used (never a fall back to the next), for the HTTP(S) reads (ssb_s3.storage.httpread) and the S3
  client (boto3's `verify=`, `s3_verify`) alike. A bundle that is not there or not readable is one
  line naming where it was set (Unreachable). With none set, boto3 keeps its own order (a
  profile's ca_bundle in ~/.aws/config, then its bundled CAs).
- Proxies: HTTPS_PROXY/https_proxy for https:// URLs, HTTP_PROXY/http_proxy for http:// ones, and
  NO_PROXY/no_proxy to go direct, with urllib.request's rules (getproxies, proxy_bypass: the lower
  case name wins). An https:// URL goes through an HTTP CONNECT tunnel, TLS end to end. The
  user:password of a proxy URL is sent as Proxy-Authorization, never shown. boto3 reads the same
  variables itself.
- Pools: one urllib3 PoolManager (ProxyManager behind a proxy) per proxy and CA bundle, kept for
  the process; connections are reused. urllib3 never retries nor follows a redirect here
  (retries=False, redirect=False): httpread's own rules do (deadline, redirects, the token's origin).
  Every socket a request connects or reuses is handed to the request's watcher (`request(watch=)`),
  so httpread's deadline can shut it down whatever step the request is at.
- A failure no retry can heal is Unreachable, one line naming the URL, the cause and the fix: the
  connection refused, a host name that does not exist (EAI_NONAME), a certificate that is not
  trusted or is for another name, TLS spoken to a plain-http port, plain http spoken to a TLS port
  (found by one TLS handshake with the same host and port, `speaks_tls`, after a plain-http request
  was closed without an answer or answered 400). It is not a StoreError: no caller turns it into
  one file's problem, the run stops at the first one (a product's own prefix_path server makes it
  that product's problem); the S3 client does not retry it (`no_retry_when_unreachable`). Timeouts
  and connections cut mid-way are not Unreachable (they may heal).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import socket
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from ..errors import Unreachable

_URLLIB3_MAJOR = int(str(getattr(urllib3, "__version__", "2")).split(".")[0])
CA_VARIABLES = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
TRUST_FIX = "give the CA that signed it with --ca-bundle FILE or AWS_CA_BUNDLE=FILE"
POOL_SIZE = 16  # connections kept per host: the manifest readers read 16 at once
PROBE_TIMEOUT = 1.0  # seconds for the TLS handshake of speaks_tls (a TLS server answers at once)

_option: str | None = None


def set_ca_bundle(path: str | None) -> None:
    """The CA bundle of the command line (--ca-bundle), first in the order."""
    global _option
    _option = path or None


def ca_bundle() -> tuple[str, str] | None:
    """(path, where it was set) of the CA bundle to trust, or None for the system's store; a path
    that is not a file nor a folder is one line (Unreachable)."""
    for where, path in (("--ca-bundle", _option), *((name, os.environ.get(name)) for name in CA_VARIABLES)):
        if path:
            if not os.path.exists(path):
                raise Unreachable(f"{where} '{path}': no such file (expected a PEM file of the CA certificates "
                                  "to trust)")
            return path, where
    return None


def s3_verify() -> str | None:
    """boto3's `verify=`: the chosen bundle, or None to keep boto3's own order."""
    chosen = ca_bundle()
    return chosen[0] if chosen else None


def _trust() -> str:
    """Where the trusted CAs come from, for messages."""
    chosen = ca_bundle()
    return f"{chosen[1]} {chosen[0]}" if chosen else "the system's CA store"


@functools.lru_cache(maxsize=8)
def _context(path: str | None, where: str) -> ssl.SSLContext:
    try:
        if path is None:
            context = ssl.create_default_context()
        elif os.path.isdir(path):
            context = ssl.create_default_context(capath=path)
        else:
            context = ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise Unreachable(f"{where} '{path}': not a readable PEM file of CA certificates ({exc})") from None
    if _URLLIB3_MAJOR < 2:  # urllib3 1.x checks the host name itself (and IP
        context.check_hostname = False  # addresses only so): the certificate is still verified
    return context


def proxy_for(url: str) -> str | None:
    """The proxy URL `url` goes through, or None (no variable set, or NO_PROXY names its host)."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme.lower())
    if not proxy:
        return None
    netloc = parts.netloc.rpartition("@")[2]
    if urllib.request.proxy_bypass(netloc):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _shown(url: str) -> str:
    """A URL without its user:password@ part."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme}{sep}{netloc.rpartition('@')[2]}{slash}{path}"


# -- the pools --------------------------------------------------------------------------------

_local = threading.local()


def _watched(sock: Any) -> None:
    watch = getattr(_local, "watch", None)
    if watch is not None and isinstance(sock, socket.socket):
        watch(sock)


class _Watching:
    """Hands each socket a connection connects or reuses to the request's watcher (mixed into
    urllib3's two connection classes, before them)."""

    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]  # urllib3's connection, next in the MRO
        _watched(self.sock)

    def putrequest(self, *args: Any, **kwargs: Any) -> None:
        _watched(self.sock)
        super().putrequest(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watching, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watching, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_managers: dict[tuple[str | None, str | None], urllib3.PoolManager] = {}
_managers_lock = threading.Lock()


def _manager(proxy: str | None) -> urllib3.PoolManager:
    chosen = ca_bundle()
    key = (proxy, chosen[0] if chosen else None)
    with _managers_lock:
        manager = _managers.get(key)
        if manager is None:
            context = _context(*chosen) if chosen else _context(None, "the system's CA store")
            options: dict[str, Any] = {"num_pools": 32, "maxsize": POOL_SIZE, "block": False, "retries": False,
                                       "ssl_context": context}
            if proxy:
                parts = urllib.parse.urlsplit(proxy)
                headers = None
                if parts.username is not None:
                    auth = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
                    headers = urllib3.util.make_headers(proxy_basic_auth=auth)
                manager = urllib3.ProxyManager(_shown(proxy), proxy_headers=headers, **options)
            else:
                manager = urllib3.PoolManager(**options)
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
            _managers[key] = manager
    return manager


@contextlib.contextmanager
def _watching(watch: Callable[[socket.socket], None]) -> Iterator[None]:
    _local.watch = watch
    try:
        yield
    finally:
        _local.watch = None


def request(url: str, method: str, headers: dict[str, str], timeout: float,
            watch: Callable[[socket.socket], None]) -> Any:
    """Send one request (no retry, no redirect followed) and return urllib3's response, its body
    not read. A failure no retry can heal is Unreachable; any other is urllib3's or the socket's
    exception, for the caller to word (timeouts, a connection cut)."""
    proxy = proxy_for(url)
    manager = _manager(proxy)
    try:
        with _watching(watch):
            return manager.urlopen(method, url, headers=headers, redirect=False, retries=False,
                                   preload_content=False, decode_content=False,
                                   timeout=urllib3.Timeout(connect=timeout, read=timeout))
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        problem = unreachable(url, exc, proxy)
        if problem is not None:
            raise problem from None
        raise


# -- what a failure means ---------------------------------------------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, what it wraps (args, botocore's `error`, __cause__, __context__), depth first."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        kwargs = getattr(current, "kwargs", None)
        if isinstance(kwargs, dict) and isinstance(kwargs.get("error"), BaseException):
            inner.append(kwargs["error"])
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            inner.append(reason)
        inner += [e for e in (current.__cause__, current.__context__) if e is not None]
        todo.extend(inner)


_spoke_tls: dict[tuple[str, int], bool] = {}


def speaks_tls(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether host:port answers a TLS handshake (its certificate not checked): one connection,
    once per host and port and process."""
    if (host, port) not in _spoke_tls:
        _spoke_tls[(host, port)] = _handshake(host, port, timeout)
    return _spoke_tls[(host, port)]


def _handshake(host: str, port: int, timeout: float) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host if not _is_ip(host) else None):
            return True
    except (OSError, ValueError):
        return False


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def plain_http_to_tls(url: str) -> Unreachable | None:
    """Unreachable when `url` is http:// and its host and port speak TLS (call it after a plain-http
    request got no answer or a 400: one handshake to find out)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "http" or not parts.hostname:
        return None
    try:
        port = parts.port or 80
    except ValueError:
        return None
    if not speaks_tls(parts.hostname, port):
        return None
    https = urllib.parse.urlunsplit(("https", parts.netloc.rpartition("@")[2], "", "", ""))
    return Unreachable(f"{_shown(url)}: this port speaks TLS, not plain http: use https:// ({https})")


def unreachable(url: str, exc: BaseException, proxy: str | None = None) -> Unreachable | None:
    """`exc` as one Unreachable line naming `url`, the cause and the fix when no retry can heal it;
    None for anything else (timeouts, a connection cut mid-way...)."""
    where = _shown(url)
    via = f" (through the proxy {_shown(proxy)})" if proxy else ""
    host = urllib.parse.urlsplit(url).hostname or ""
    closed = False
    for cause in _causes(exc):
        if isinstance(cause, Unreachable):
            return cause
        if type(cause).__name__ == "CertificateError" and not isinstance(cause, ssl.SSLCertVerificationError):
            return Unreachable(f"{where}: TLS: the server's certificate is not valid for '{host}' ({cause}): "
                               "use the host name the certificate was issued for")  # urllib3's own check
        if isinstance(cause, ssl.SSLCertVerificationError):
            message = getattr(cause, "verify_message", "") or " ".join(str(a) for a in cause.args)
            if any(word in message.lower() for word in ("mismatch", "not valid for", "doesn't match")):
                return Unreachable(f"{where}: TLS: the server's certificate is not valid for '{host}' ({message}): "
                                   "use the host name the certificate was issued for")
            return Unreachable(f"{where}: TLS: the server's certificate is not trusted ({message}; trusted: "
                               f"{_trust()}): {TRUST_FIX}")
        if isinstance(cause, ssl.SSLError):
            reason = getattr(cause, "reason", None) or str(cause)
            if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "UNKNOWN_PROTOCOL",
                          "PACKET_LENGTH_TOO_LONG"):
                http_url = urllib.parse.urlunsplit(("http", urllib.parse.urlsplit(where).netloc, "", "", ""))
                return Unreachable(f"{where}: TLS handshake failed ({reason}): this port speaks plain http, "
                                   f"not https: use http:// ({http_url}) or the server's https port")
            return Unreachable(f"{where}: TLS handshake failed ({reason}){via}")
        if isinstance(cause, ConnectionRefusedError):
            if proxy and any("Proxy" in type(c).__name__ for c in _causes(exc)):  # urllib3's, botocore's
                return Unreachable(f"{where}: connection refused by the proxy {_shown(proxy)}: check HTTPS_PROXY/"
                                   "HTTP_PROXY, or name the host in NO_PROXY")
            return Unreachable(f"{where}: connection refused{via}: nothing listens there; check the host and "
                               "port, and that the server runs")
        if isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_NONAME:  # not EAI_AGAIN: may heal
            return Unreachable(f"{where}: cannot resolve the host name ({cause.strerror or cause}){via}: "
                               "check the URL")
        if isinstance(cause, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)) \
                or type(cause).__name__ == "ConnectionClosedError":
            closed = True
    if closed and not proxy:
        return plain_http_to_tls(url)
    return None


# -- the S3 client ----------------------------------------------------------------------------


def no_retry_when_unreachable(caught_exception: BaseException | None = None, request_dict: Any = None,
                              **_: Any) -> None:
    """botocore's needs-retry event (registered first): a failure no retry can heal is raised at
    once as Unreachable (botocore's standard mode retries every connection error)."""
    if caught_exception is None:
        return
    url = str((request_dict or {}).get("url", "")) or str(getattr(caught_exception, "kwargs", {}).get(
        "endpoint_url", ""))
    parts = urllib.parse.urlsplit(url)
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "", "", ""))  # the endpoint, not the key
    problem = unreachable(url, caught_exception, proxy_for(url) if url else None)
    if problem is not None:
        raise problem from None
