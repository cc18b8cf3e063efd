"""HTTPS as the rest of the ecosystem does it (issue 23 section 1): the CA bundle in the AWS tools'
order, HTTPS_PROXY/NO_PROXY, and a failure no retry can heal in one line, at once.

Real parts: the session's SeaweedFS, whose S3 also listens over HTTPS with a certificate of the
session's private CA (tests/realparts.make_test_ca, `weed mini -s3.cert.file`), and an HTTP CONNECT
proxy written here (threaded, 127.0.0.1) that counts the tunnels it opened, so a test can tell it
was used. ssb-s3 runs as a user runs it (a subprocess), in an environment without any CA or proxy
variable but those the test sets.
"""

from __future__ import annotations

import os
import select
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SSB
from realparts import S3Server, TlsFiles, free_port

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "local" / "tree.yml"
UNSET = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "NIX_SSL_CERT_FILE",
         "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
         "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "SSB_ENDPOINT_URL", "SSB_CONFIG", "SSB_TARGET")
FAST = 15.0  # seconds, on a loaded machine: a failure no retry can heal is said at once (50 s and more with
# botocore's retries: 8 attempts with backoff)


class ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTP CONNECT proxy on 127.0.0.1: `tunnels` lists the host:port of every tunnel it opened."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Tunnel)
        self.tunnels: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, name="connect-proxy", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=10)


class _Tunnel(socketserver.StreamRequestHandler):
    server: ConnectProxy

    def handle(self) -> None:
        request = self.rfile.readline(8192).decode("latin-1").split()
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass  # the request's headers
        if len(request) != 3 or request[0] != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        host, _, port = request[1].rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        self.server.tunnels.append(request[1])
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with upstream:
            ends = [self.connection, upstream]
            while True:
                readable, _, _ = select.select(ends, [], [], 30)
                if not readable:
                    return
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy()
    yield server
    server.close()


def clean_env(server: S3Server | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    if server is not None:
        env.update(server.credentials, AWS_DEFAULT_REGION=server.region)
    env.update(extra)
    return env


def ssb(*args: str, env: dict[str, str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    return at_once((args, env), cwd=cwd)[0]


def at_once(*runs: tuple[tuple[str, ...], dict[str, str]], cwd: Path) -> list[tuple[subprocess.CompletedProcess[str],
                                                                                   float]]:
    """Run ssb-s3 once per (arguments, environment), all at the same time (the suite's time): each
    result with its own wall time."""
    started = [(args, time.monotonic(), subprocess.Popen([*SSB, *args], env=env, cwd=cwd,
                                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
               for args, env in runs]
    results = []
    for _args, start, popen in started:
        out, err = popen.communicate(timeout=300)
        results.append((subprocess.CompletedProcess(popen.args, popen.returncode, out, err), time.monotonic() - start))
    return results


def one_line(proc: subprocess.CompletedProcess[str], took: float, *expected: str) -> str:
    """The run failed at once with one error line holding every `expected` text, no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert took < FAST, f"{took:.1f} s: {lines[0]}"
    return lines[0]


def test_publish_over_https_trusts_the_ca_bundle_in_the_aws_order(s3_server: S3Server, bucket: str,
                                                                   tls_files: TlsFiles, tmp_path: Path) -> None:
    publish = ("-c", str(EXAMPLE), "-t", f"s3://{bucket}", "--endpoint-url", s3_server.https_endpoint, "publish")
    proc, took = ssb(*publish, env=clean_env(s3_server), cwd=tmp_path)
    one_line(proc, took, s3_server.https_endpoint, "certificate is not trusted", "--ca-bundle FILE or AWS_CA_BUNDLE")
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket)  # nothing was written

    proc, took = ssb("--ca-bundle", str(tls_files.ca_cert), *publish, env=clean_env(s3_server), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b'"index"' in s3_server.client().get_object(Bucket=bucket, Key="streams/v1/index.json")["Body"].read()

    listing = ("-c", str(EXAMPLE), "-t", f"s3://{bucket}", "--endpoint-url", s3_server.https_endpoint, "list",
               "-c", "N", "-f", "csv")
    # The first one set is the one used: AWS_CA_BUNDLE naming another CA, SSL_CERT_FILE is not read.
    missing = tmp_path / "no-such-ca.pem"
    (env_ok, _), (first_wins, took), (no_file, took2) = at_once(
        (listing, clean_env(s3_server, AWS_CA_BUNDLE=str(tls_files.ca_cert))),
        (listing, clean_env(s3_server, AWS_CA_BUNDLE=str(tls_files.server_cert), SSL_CERT_FILE=str(tls_files.ca_cert))),
        (("--ca-bundle", str(missing), *listing), clean_env(s3_server)), cwd=tmp_path)
    assert env_ok.returncode == 0 and "sample:1.0:amd64:default" in env_ok.stdout, env_ok.stderr
    one_line(first_wins, took, "not trusted", f"AWS_CA_BUNDLE {tls_files.server_cert}")
    one_line(no_file, took2, f"--ca-bundle '{missing}': no such file")


def test_https_reads_go_through_https_proxy_unless_no_proxy_names_the_host(
        s3_server: S3Server, bucket: str, tls_files: TlsFiles, proxy: ConnectProxy, tmp_path: Path) -> None:
    host_port = s3_server.https_endpoint.removeprefix("https://")
    proxied = clean_env(s3_server, HTTPS_PROXY=proxy.url)
    publish = ("--ca-bundle", str(tls_files.ca_cert), "-c", str(EXAMPLE), "-t", f"s3://{bucket}",
               "--endpoint-url", s3_server.https_endpoint, "publish")
    proc, _ = ssb(*publish, env=proxied, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert host_port in proxy.tunnels  # boto3 honours HTTPS_PROXY too

    before = len(proxy.tunnels)
    verify = ("--ca-bundle", str(tls_files.ca_cert), "-c", str(EXAMPLE), "verify", "--base-url",
              s3_server.public_url(bucket))
    proc, _ = ssb(*verify, env=proxied, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(proxy.tunnels) > before and set(proxy.tunnels[before:]) == {host_port}

    before = len(proxy.tunnels)
    proc, _ = ssb(*verify, env={**proxied, "NO_PROXY": "localhost,127.0.0.1"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(proxy.tunnels) == before  # went direct

    dead = f"http://127.0.0.1:{free_port()}"
    for proc, took in at_once((verify, {**proxied, "HTTPS_PROXY": dead}), (publish, {**proxied, "HTTPS_PROXY": dead}),
                              cwd=tmp_path):
        one_line(proc, took, "connection refused by the proxy", dead)


CASES = {
    "refused": (lambda s3, port: f"http://127.0.0.1:{port}", ("connection refused", "nothing listens there")),
    "untrusted": (lambda s3, port: s3.https_endpoint, ("certificate is not trusted", "--ca-bundle FILE")),
    "https to the http port": (lambda s3, port: s3.endpoint.replace("http://", "https://"),
                               ("this port speaks plain http, not https", "use http://")),
    "http to the https port": (lambda s3, port: s3.https_endpoint.replace("https://", "http://"),
                               ("this port speaks TLS, not plain http", "use https://")),
}


@pytest.mark.parametrize("case", CASES)
def test_a_failure_no_retry_can_heal_is_one_line_at_once(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                         case: str) -> None:
    endpoint_of, expected = CASES[case]
    endpoint = endpoint_of(s3_server, free_port())
    (read, took), (publish, took2) = at_once(
        (("verify", "--base-url", f"{endpoint}/{bucket}"), clean_env()),
        (("-c", str(EXAMPLE), "-t", f"s3://{bucket}", "--endpoint-url", endpoint, "publish"), clean_env(s3_server)),
        cwd=tmp_path)
    one_line(read, took, f"{endpoint}/{bucket}/streams/v1/index.json", *expected)
    one_line(publish, took2, endpoint, *expected)
    assert "Contents" not in s3_server.client().list_objects_v2(Bucket=bucket)
