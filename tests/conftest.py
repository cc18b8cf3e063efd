"""Pytest fixtures for real-parts tests: thin wrappers over tests/realparts.py.

Session-scoped servers keep the suite fast (SeaweedFS, LXD and Incus start once); every test gets its
own bucket so tests stay independent.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from realparts import (
    CEPH_TOOLS,
    IncusDaemon,
    LxdDaemon,
    S3Server,
    TlsFiles,
    daemon_workdir,
    make_test_ca,
    need,
    run_ceph_rgw,
    run_incus_daemon,
    run_lxd_daemon,
    run_seaweedfs,
)


@pytest.fixture(autouse=True, scope="session")
def _ssl_cert_file_decides() -> Iterator[None]:
    """The tests trust their CA through SSL_CERT_FILE (what the lxc and incus clients read too). A
    machine may set AWS_CA_BUNDLE or REQUESTS_CA_BUNDLE to its own store, and those come first in
    ssb_s3's order (ssb_s3.storage.transport): the session runs without them (set up before any
    other fixture, so the environments fixtures copy from os.environ are without them too)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
            patch.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA and a server cert for 127.0.0.1/localhost."""
    need("openssl")
    return make_test_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[S3Server]:
    """One SeaweedFS (`weed mini`) per session, http + https, SigV4 checked."""
    need("weed")
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), tls_files) as server:
        yield server


@pytest.fixture(scope="session")
def rgw_server(tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles) -> Iterator[S3Server]:
    """One Ceph RGW 16.2 (mon + memstore OSD + radosgw) per session, started only when a test asks
    for it; http + https, SigV4 checked."""
    for tool in CEPH_TOOLS:
        need(tool)
    with run_ceph_rgw(tmp_path_factory.mktemp("rgw"), tls_files) as server:
        yield server


# The real S3 servers a store-dependent test runs against: param id -> the fixture that starts it.
STORE_SERVERS = {"seaweedfs": "s3_server", "rgw": "rgw_server"}


@pytest.fixture(scope="session", params=list(STORE_SERVERS), ids=list(STORE_SERVERS))
def store_server(request: pytest.FixtureRequest) -> S3Server:
    """Each real S3 server in turn (SeaweedFS, Ceph RGW); a server starts only when its param runs."""
    server: S3Server = request.getfixturevalue(STORE_SERVERS[request.param])
    return server


def _bucket_name(request: pytest.FixtureRequest) -> str:
    """A unique, valid bucket name (3-63 chars, lowercase, digits, hyphens) derived from the test."""
    stem = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())
    return f"t-{stem[:40].strip('-')}-{secrets.token_hex(4)}"


@pytest.fixture
def bucket(s3_server: S3Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, uniquely named, publicly readable bucket for this test."""
    name = _bucket_name(request)
    s3_server.create_bucket(name, public_read=True)
    yield name


@pytest.fixture
def store_bucket(store_server: S3Server, request: pytest.FixtureRequest) -> str:
    """A fresh, publicly readable (GetObject only) bucket on `store_server`."""
    name = _bucket_name(request)
    store_server.create_bucket(name, public_read=True)
    return name


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The server's credentials through the normal boto3 environment chain, as a user sets them."""
    s3_server.use_credentials(monkeypatch)
    return s3_server


@pytest.fixture(scope="session")
def lxd_daemon(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[LxdDaemon]:
    """A private LXD daemon, started only when a test asks for it."""
    need("lxd")
    need("lxc")
    with daemon_workdir("ssb-lxd-") as workdir, run_lxd_daemon(workdir, tls_files.ca_cert) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def incus_daemon(tls_files: TlsFiles) -> Iterator[IncusDaemon]:
    """A private Incus daemon, started only when a test asks for it; runs beside `lxd_daemon`."""
    need("incusd", also_in="/usr/libexec/incus")
    need("incus")
    with daemon_workdir("ssb-incus-") as workdir, run_incus_daemon(workdir, tls_files.ca_cert) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server mode (CloudFront, and S3 -> SQS notifications later), on a free loopback port."""
    import subprocess

    from realparts import free_port, wait_for_url

    exe = need("moto_server")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{url}/moto-api/", timeout=60, proc=proc, log=log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
