"""Real parts for end-to-end tests: a real S3 server, real LXD/Incus clients and daemons.

Mocks cannot tell us whether a published tree is acceptable to LXD or Incus: only the real
clients decide (see shared DESIGN.md, sections 1 and 4). This module starts those real parts on
free loopback ports inside a test's temporary folder, and builds tiny but bootable images.
A missing tool skips the test, or fails it when ``SSB_REQUIRE_E2E=1`` (CI sets that).
"""

from __future__ import annotations

import calendar
import contextlib
import ctypes
import functools
import gzip
import hashlib
import http.server
import io
import json
import lzma
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REQUIRE_REAL = os.environ.get("SSB_REQUIRE_E2E") == "1"

# Timeouts (seconds). Generous: the machine has 2 cores and CI runs the whole suite on it.
START_TIMEOUT = 60.0
CMD_TIMEOUT = 300.0
STOP_GRACE = 5.0


class RealPartError(RuntimeError):
    """A real part failed to start or misbehaved; the message carries its log tail."""


def missing(msg: str) -> None:
    """Skip the test for a missing real part, or fail it when REQUIRE_REAL."""
    if REQUIRE_REAL:
        pytest.fail(msg + " (SSB_REQUIRE_E2E=1)", pytrace=False)
    pytest.skip(msg)


def need(tool: str, also_in: str | None = None) -> str:
    """Return the path of executable ``tool``; skip the test if absent (fail if REQUIRE_REAL).

    ``also_in`` is a folder searched before PATH (the Incus daemon lives in /usr/libexec/incus).
    CI must not go green by silently skipping the end-to-end tests, hence the switch.
    """
    search = os.environ.get("PATH", os.defpath)
    path = shutil.which(tool, path=f"{also_in}{os.pathsep}{search}" if also_in else search)
    if path is None:
        where = f"in {also_in} or on PATH" if also_in else "on PATH"
        missing(f"required tool {tool!r} not found {where}")
        raise AssertionError("unreachable")
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct free ports (sockets held together so none repeats)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _stop_process_group(proc: subprocess.Popen[Any], grace: float = STOP_GRACE) -> None:
    """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL it.

    ``weed mini`` takes several seconds to exit on SIGTERM; its folder must not be removed
    while it still writes there.
    """
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# --------------------------------------------------------------------------------------------
# TLS


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate it signed, valid for 127.0.0.1 and localhost."""

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def ssl_context(self) -> ssl.SSLContext:
        """Client context that trusts only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


def make_test_ca(dirpath: Path) -> TlsFiles:
    """Create a CA and a server cert (SAN IP:127.0.0.1, DNS:localhost) with the openssl CLI.

    LXD and Incus only accept https remotes, so the S3 server and static servers need a cert
    the clients can be told to trust (SSL_CERT_FILE, or the daemon's servercerts/ file).
    """
    openssl = need("openssl")
    dirpath.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = dirpath / "ca.key", dirpath / "ca.crt"
    key, csr, cert = dirpath / "server.key", dirpath / "server.csr", dirpath / "server.crt"
    ext = dirpath / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "3650",
        "-subj", "/CN=ssb-s3 test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "3650", "-extfile", str(ext))
    for p in (ca_key, key):
        p.chmod(0o600)
    return TlsFiles(ca_cert=ca_cert, server_cert=cert, server_key=key)


# --------------------------------------------------------------------------------------------
# S3 (SeaweedFS)


@dataclass
class S3Server:
    """A running S3 server: plain-http endpoint for the publisher, https one for LXD/Incus."""

    endpoint: str
    https_endpoint: str
    access_key: str
    secret_key: str
    ca_file: Path
    region: str = "us-east-1"
    log_file: Path | None = None
    kind: str = "seaweedfs"  # which implementation: "seaweedfs" or "rgw" (the store-matrix tests' param ids)

    def client(self, *, secret_key: str | None = None, endpoint: str | None = None) -> Any:
        """boto3 S3 client, path-style, with checksums only when required (DESIGN section 3)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key if secret_key is not None else self.secret_key,
            region_name=self.region,
            verify=str(self.ca_file),
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )

    def upload_folder(self, bucket: str, folder: Path) -> None:
        """Every file under `folder` into `bucket`, keyed by its path relative to the folder (as a
        builder's `aws s3 sync` would)."""
        client = self.client()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            client.upload_file(str(path), bucket, path.relative_to(folder).as_posix())

    def create_bucket(self, name: str, public_read: bool = False) -> None:
        """Create a bucket; ``public_read`` lets anyone GET every key (what a remote needs)."""
        c = self.client()
        c.create_bucket(Bucket=name)
        if public_read:
            policy = {
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"arn:aws:s3:::{name}/*"],
                }],
            }
            c.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))

    @property
    def credentials(self) -> dict[str, str]:
        """The environment a client of this server needs (the normal boto3 credential chain)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def use_credentials(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Put this server's credentials in the environment, for clients made in the test."""
        for name, value in self.credentials.items():
            monkeypatch.setenv(name, value)

    def public_url(self, bucket: str, prefix: str = "") -> str:
        """https URL of ``bucket``/``prefix``, usable as an LXD or Incus remote URL."""
        url = f"{self.https_endpoint}/{bucket}"
        prefix = prefix.strip("/")
        return f"{url}/{prefix}" if prefix else url

    def anonymous_get(self, url: str) -> bytes:
        """GET ``url`` without credentials, trusting the test CA (as a remote's client does)."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(url, context=ctx, timeout=30) as resp:
            data: bytes = resp.read()
        return data


# Every port flag of `weed mini` (checked with `weed mini -h`, SeaweedFS 4.x). Anything left at
# its default would collide between two sessions; 0 disables the Iceberg and Lance servers.
_WEED_PORT_FLAGS = (
    "s3.port", "s3.port.https", "s3.port.grpc",
    "master.port", "master.port.grpc",
    "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc",
    "admin.port", "admin.port.grpc",
)


@contextlib.contextmanager
def run_seaweedfs(workdir: Path, tls: TlsFiles | None = None, *, credentials: bool = True) -> Iterator[S3Server]:
    """Run ``weed mini`` on free loopback ports with SigV4 auth and HTTPS; stop it on exit.

    Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in its environment; with
    them set it really checks signatures (a wrong secret gets SignatureDoesNotMatch).
    `credentials=False` starts it with none: it then checks no signature, so a loopback proxy in
    front of it may drop or rewrite signed headers (DESIGN section 4); clients still sign with the
    made-up keys of the returned S3Server.
    """
    weed = need("weed")
    workdir.mkdir(parents=True, exist_ok=True)
    if tls is None:
        tls = make_test_ca(workdir / "tls")
    last_error: Exception | None = None
    for attempt in range(2):  # a port taken between free_ports() and bind gets one retry
        try:
            server, proc = _start_weed(weed, workdir / f"run{attempt}", tls, credentials=credentials)
        except _PortRace as exc:
            last_error = exc
            continue
        try:
            yield server
        finally:
            _stop_process_group(proc)
        return
    raise RealPartError(f"weed mini did not start: {last_error}")


class _PortRace(RealPartError):
    """weed could not bind a port that looked free."""


def _start_weed(weed: str, rundir: Path, tls: TlsFiles, *,
                credentials: bool = True) -> tuple[S3Server, subprocess.Popen[bytes]]:
    """Start one ``weed mini`` and wait until signed S3 calls work over http and https."""
    data, logs = rundir / "data", rundir / "logs"
    data.mkdir(parents=True)
    logs.mkdir()
    ports = dict(zip(_WEED_PORT_FLAGS, free_ports(len(_WEED_PORT_FLAGS)), strict=True))
    ports["s3.port.iceberg"] = 0
    ports["s3.port.lance"] = 0
    access, secret = "ak" + secrets.token_hex(8), secrets.token_hex(20)
    cmd = [weed, f"-logdir={logs}", "mini", f"-dir={data}", "-ip=127.0.0.1",
           "-ip.bind=127.0.0.1", "-admin.ui=false", "-webdav=false",
           "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=2000",
           f"-s3.cert.file={tls.server_cert}", f"-s3.key.file={tls.server_key}"]
    cmd += [f"-{flag}={port}" for flag, port in ports.items()]
    # Unix sockets default to /tmp/seaweedfs-*-<port>.sock and are not always removed.
    if len(str(rundir)) < 70:
        cmd += [f"-s3.localSocket={rundir}/s3.sock", f"-filer.localSocket={rundir}/filer.sock"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret)
    if not credentials:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(name, None)
    log_file = rundir / "weed.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=rundir, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(
        endpoint=f"http://127.0.0.1:{ports['s3.port']}",
        https_endpoint=f"https://127.0.0.1:{ports['s3.port.https']}",
        access_key=access, secret_key=secret, ca_file=tls.ca_cert, log_file=log_file,
    )
    deadline = time.monotonic() + START_TIMEOUT
    error: Exception | None = None
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = _tail(log_file)
                if "address already in use" in tail:
                    raise _PortRace(tail)
                raise RealPartError(f"weed mini exited with {proc.returncode}:\n{tail}")
            try:
                server.client().list_buckets()
                server.client(endpoint=server.https_endpoint).list_buckets()
                return server, proc
            except Exception as exc:  # any failure means "not ready yet"
                error = exc
                time.sleep(0.3)
        raise RealPartError(f"weed mini not ready after {START_TIMEOUT:.0f}s ({error}):\n"
                            f"{_tail(log_file)}")
    except BaseException:
        _stop_process_group(proc)
        raise


# --------------------------------------------------------------------------------------------
# S3 (Ceph RGW)


# Every binary run_ceph_rgw() runs (Debian 12: ceph-mon ceph-osd radosgw ceph-common).
CEPH_TOOLS = ("ceph-authtool", "monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw", "radosgw-admin")

# The pools of RGW's default zone. Made up front, so that neither RGW's start nor the first bucket
# and the first write wait for a pool to be created (DESIGN section 4).
_RGW_POOLS = (".rgw.root", "default.rgw.log", "default.rgw.control", "default.rgw.meta",
              "default.rgw.buckets.index", "default.rgw.buckets.data", "default.rgw.buckets.non-ec")

_RGW_NAME = "client.rgw.gw"
_RGW_UID = "ssb-test"


@contextlib.contextmanager
def run_ceph_rgw(workdir: Path, tls: TlsFiles | None = None) -> Iterator[S3Server]:
    """Run a one-mon, one-OSD (memstore) Ceph with radosgw on free loopback ports; stop it on exit.

    Invariants: every file the cluster writes (keys, mon store, OSD, sockets, logs) is under
    ``workdir``, because every command gets ``-c <dir>/ceph.conf`` (/etc/ceph, /var/lib/ceph and
    /var/log/ceph stay untouched); every wait is bounded by START_TIMEOUT; on exit, and on any start
    failure, exactly the daemons started here (radosgw, then the OSD, then the mon) are stopped.
    radosgw's beast frontend serves plain http and https (the test CA's server cert); the S3 user
    has fresh random keys and SigV4 is checked. No mgr: RGW does not need one.
    """
    tools = {tool: need(tool) for tool in CEPH_TOOLS}
    workdir.mkdir(parents=True, exist_ok=True)
    if tls is None:
        tls = make_test_ca(workdir / "tls")
    last_error: Exception | None = None
    for attempt in range(2):  # a port taken between free_ports() and bind gets one retry
        cluster = _CephCluster(tools, workdir / f"run{attempt}", tls)
        try:
            server = cluster.start()
        except _PortRace as exc:
            cluster.stop()
            last_error = exc
            continue
        except BaseException:
            cluster.stop()
            raise
        try:
            yield server
        finally:
            cluster.stop()
        return
    raise RealPartError(f"Ceph RGW did not start: {last_error}")


def _die_with_parent() -> None:
    """In a child before exec: the kernel SIGKILLs it when the test process dies, even by SIGKILL
    (PR_SET_PDEATHSIG), so a killed test run cannot leave a daemon behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class _CephCluster:
    """The daemons of one private Ceph cluster; ``stop()`` ends exactly the ones ``start()`` began."""

    def __init__(self, tools: dict[str, str], rundir: Path, tls: TlsFiles) -> None:
        self.tools, self.dir, self.tls = tools, rundir, tls
        self.conf = rundir / "ceph.conf"
        self.logs = rundir / "log"
        self.daemons: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.deadline = 0.0

    def start(self) -> S3Server:
        """Write the config, make the keys, start mon, OSD and radosgw, create the S3 user."""
        self.deadline = time.monotonic() + START_TIMEOUT
        for sub in ("log", "run", "crash", "mon/a", "osd/0", "rgw"):
            (self.dir / sub).mkdir(parents=True)
        mon_port, http_port, https_port = free_ports(3)
        fsid, osd_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        self.conf.write_text(self._config(fsid, mon_port, http_port, https_port))
        keyring = self.dir / "keyring"
        # mon --mkfs imports every key of this keyring, with its caps, into the auth database.
        for name, caps in (("mon.", ["mon", "allow *"]),
                           ("client.admin", ["mon", "allow *", "osd", "allow *", "mgr", "allow *"]),
                           (_RGW_NAME, ["mon", "allow rw", "osd", "allow rwx"]),
                           ("osd.0", ["mon", "allow profile osd", "osd", "allow *"])):
            create = ["--create-keyring"] if name == "mon." else []
            cap_args = [arg for i in range(0, len(caps), 2) for arg in ("--cap", caps[i], caps[i + 1])]
            self._run("ceph-authtool", str(keyring), *create, "--gen-key", "-n", name, *cap_args)
        monmap = self.dir / "monmap"
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                  f"[v2:127.0.0.1:{mon_port}]", str(monmap))
        self._run("ceph-mon", "-i", "a", "--mkfs", "--monmap", str(monmap), "--keyring", str(keyring))
        self._daemon("ceph-mon", "mon.a", "-i", "a")
        self._wait_port(mon_port, "mon.a")
        # The OSD's key is already known to the mon: `osd new` only allocates id 0 for the uuid.
        self._ceph("osd", "new", osd_uuid, "0")
        self._run("ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("ceph-osd", "osd.0", "-i", "0")
        commands = "".join(f"osd pool create {pool} 8 8\nosd pool application enable {pool} rgw\n"
                           for pool in _RGW_POOLS)
        self._ceph(stdin=commands)  # one CLI run for all: each run costs ~0.3 CPU-s
        pools = set(json.loads(self._ceph("osd", "pool", "ls", "--format=json")))
        if not pools.issuperset(_RGW_POOLS):
            raise self._failure(f"pools not created: {sorted(set(_RGW_POOLS) - pools)}")
        self._daemon("radosgw", _RGW_NAME, "-n", _RGW_NAME)
        access, secret = "ak" + secrets.token_hex(8), secrets.token_hex(20)
        server = S3Server(
            endpoint=f"http://127.0.0.1:{http_port}", https_endpoint=f"https://127.0.0.1:{https_port}",
            access_key=access, secret_key=secret, ca_file=self.tls.ca_cert,
            log_file=self.logs / f"{_RGW_NAME}.log", kind="rgw",
        )
        self._wait_port(http_port, _RGW_NAME)
        # Made once radosgw has set up the default realm/zone, so the two never race to create them.
        self._run("radosgw-admin", "user", "create", f"--uid={_RGW_UID}", "--display-name=ssb_s3 tests",
                  f"--access-key={access}", f"--secret-key={secret}")
        error: Exception | None = None
        rgw_out = self.logs / f"{_RGW_NAME}.out"
        while time.monotonic() < self.deadline:
            self._check_alive()
            # radosgw keeps running when a frontend fails (a bad certificate, a port taken): it says
            # so on stderr, which is empty otherwise.
            said = rgw_out.read_text(errors="replace")
            if "already in use" in said:
                raise _PortRace(f"radosgw could not bind its ports:\n{said}")
            if "failed to" in said:
                raise self._failure("radosgw frontend failed")
            try:
                server.client().list_buckets()
                server.client(endpoint=server.https_endpoint).list_buckets()
                return server
            except Exception as exc:  # any failure means "not ready yet"
                error = exc
                time.sleep(0.2)
        raise self._failure(f"S3 not ready after {START_TIMEOUT:.0f}s ({error})")

    def _config(self, fsid: str, mon_port: int, http_port: int, https_port: int) -> str:
        d = self.dir
        admin_socket = f"{d}/run/$name.asok"
        if len(admin_socket.replace("$name", _RGW_NAME)) > 100:  # a unix socket path is at most 107 bytes
            admin_socket = ""  # none: nothing here uses it
        frontend = (f"beast endpoint=127.0.0.1:{http_port} ssl_endpoint=127.0.0.1:{https_port} "
                    f"ssl_certificate={self.tls.server_cert} ssl_private_key={self.tls.server_key}")
        settings = {
            "fsid": fsid,
            "mon_host": f"v2:127.0.0.1:{mon_port}",
            "ms_bind_msgr1": "false",
            "public_addr": "127.0.0.1",
            "cluster_addr": "127.0.0.1",
            "auth_allow_insecure_global_id_reclaim": "false",
            "keyring": f"{d}/keyring",
            "run_dir": f"{d}/run",
            "crash_dir": f"{d}/crash",
            "log_file": f"{d}/log/$name.log",
            "mon_cluster_log_file": f"{d}/log/cluster.$channel.log",
            "admin_socket": admin_socket,
            "pid_file": f"{d}/run/$name.pid",
            "mon_data": f"{d}/mon/$id",
            "osd_data": f"{d}/osd/$id",
            "rgw_data": f"{d}/rgw",
            "osd_objectstore": "memstore",
            "osd_pool_default_size": "1",
            "osd_pool_default_min_size": "1",
            "mon_allow_pool_size_one": "true",
            "mon_warn_on_pool_no_redundancy": "false",
            "osd_crush_chooseleaf_type": "0",
            "osd_pool_default_pg_num": "8",
            "osd_pool_default_pgp_num": "8",
            "osd_pool_default_pg_autoscale_mode": "off",
            # The mon batches changes for 1 s by default: each pool command would wait that long.
            "paxos_propose_interval": "0.05",
            "rgw_frontends": frontend,
            # Deleted objects' data is freed by the garbage collector this long after (memstore is RAM).
            "rgw_gc_obj_min_wait": "60",
        }
        return "[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())

    def _run(self, tool: str, *args: str, stdin: str | None = None) -> str:
        """Run a Ceph command to completion (bounded by the start deadline); return its stdout."""
        conf_args = [] if tool in ("ceph-authtool", "monmaptool") else ["-c", str(self.conf)]
        timeout = max(1.0, self.deadline - time.monotonic())
        try:
            done = subprocess.run([self.tools[tool], *conf_args, *args], input=stdin, capture_output=True,
                                  text=True, check=False, timeout=timeout, env=self._env())
        except subprocess.TimeoutExpired:
            # Named by the tool and its first word only, and not chained to the TimeoutExpired:
            # radosgw-admin's arguments carry the S3 keys.
            raise self._failure(f"{tool} {args[0] if args else ''} timed out") from None
        if done.returncode != 0:
            raise self._failure(f"{tool} {args[0] if args else ''} failed ({done.returncode}): "
                                f"{done.stderr.strip()[-2000:]}")
        return done.stdout

    def _ceph(self, *args: str, stdin: str | None = None) -> str:
        """The `ceph` CLI as client.admin; with ``stdin``, one command a line (its interactive mode)."""
        timeout = max(1, int(self.deadline - time.monotonic()))
        return self._run("ceph", f"--connect-timeout={timeout}", *args, stdin=stdin)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CEPH_")}
        env["CEPH_CONF"] = str(self.conf)
        return env

    def _daemon(self, tool: str, name: str, *args: str) -> None:
        """Start a daemon in the foreground, in its own session, output to log/<name>.out."""
        with (self.logs / f"{name}.out").open("wb") as out:
            proc = subprocess.Popen([self.tools[tool], "-c", str(self.conf), "-f", *args], env=self._env(),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=_die_with_parent)
        self.daemons.append((name, proc))

    def _wait_port(self, port: int, name: str) -> None:
        """Wait until 127.0.0.1:``port`` accepts a connection (the daemon bound it)."""
        while time.monotonic() < self.deadline:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            time.sleep(0.1)
        raise self._failure(f"{name} did not listen on port {port} within {START_TIMEOUT:.0f}s")

    def _check_alive(self) -> None:
        for name, proc in self.daemons:
            if proc.poll() is not None:
                tail = self._log_tails()
                if "already in use" in tail:
                    raise _PortRace(f"{name} could not bind its port:\n{tail}")
                raise self._failure(f"{name} exited with {proc.returncode}")

    def _log_tails(self) -> str:
        """The last lines of each daemon's log and output (a daemon that fails early only has .out)."""
        parts = []
        for path in sorted(self.logs.glob("*")):
            if path.stat().st_size:
                parts.append(f"--- {path.name}:\n{_tail(path, 15)}")
        return "\n".join(parts)

    def _failure(self, msg: str) -> RealPartError:
        return RealPartError(f"Ceph RGW in {self.dir}: {msg}\n{self._log_tails()}")

    def stop(self) -> None:
        """Stop radosgw, then the OSD (while the mon can still hear it leave), then the mon; then
        check that no process still names this folder (a CLI run cut short, a forked helper)."""
        for _name, proc in reversed(self.daemons):
            _stop_process_group(proc, grace=10)
        left = _pids_using(f"{self.dir}/")
        if left:
            raise RealPartError(f"Ceph processes still running after stop: {left}")


# --------------------------------------------------------------------------------------------
# Images


IMAGE_KINDS = ("squashfs", "tarxz", "both", "unified", "vm", "lxc")
_BUSYBOX_LINKS = ("sh", "true", "false", "init", "sleep", "ls", "cat", "echo", "mount",
                  "poweroff", "halt", "reboot", "env", "id", "uname", "ps", "hostname")
_ROOT_DIRS = {"bin": 0o755, "sbin": 0o755, "dev": 0o755, "proc": 0o555, "sys": 0o555,
              "tmp": 0o1777, "etc": 0o755, "root": 0o700, "run": 0o755, "var": 0o755}


def _creation_date(serial: str) -> int:
    """Unix time from a serial like 20260101_0000 or 20260101_00:00 (date only as fallback)."""
    digits = "".join(ch for ch in serial if ch.isdigit())
    for fmt, n in (("%Y%m%d%H%M", 12), ("%Y%m%d", 8)):
        try:
            return calendar.timegm(time.strptime(digits[:n], fmt))
        except ValueError:
            continue
    return 1767225600  # 2026-01-01T00:00:00Z


def _yaml_str(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def _metadata_yaml(*, arch: str, os_name: str, release: str, variant: str,
                   description: str, serial: str, created: int) -> bytes:
    """The metadata.yaml that distrobuilder writes, reduced to what LXD reads."""
    return (
        f"architecture: {_yaml_str(arch)}\n"
        f"creation_date: {created}\n"
        f"expiry_date: {created + 30 * 86400}\n"
        "properties:\n"
        f"  architecture: {_yaml_str(arch)}\n"
        f"  os: {_yaml_str(os_name)}\n"
        f"  release: {_yaml_str(release)}\n"
        f"  variant: {_yaml_str(variant)}\n"
        f"  description: {_yaml_str(description)}\n"
        f"  serial: {_yaml_str(serial)}\n"
        "templates: {}\n"
    ).encode()


@dataclass
class _Entry:
    """One member of an archive: a directory, a file or a symlink."""

    name: str
    mode: int
    data: bytes | None = None  # file content
    link: str | None = None  # symlink target


@functools.lru_cache(maxsize=1)
def _busybox_bytes() -> bytes:
    """The static busybox binary (from busybox-static), so a container really boots."""
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        p = Path(cand)
        if p.is_file():
            out = subprocess.run(["file", "-L", str(p)], capture_output=True, text=True,
                                 check=False).stdout if shutil.which("file") else "static"
            if "dynamically linked" not in out:
                return p.read_bytes()
    missing("no static busybox (apt-get install busybox-static)")
    raise AssertionError("unreachable")


def _rootfs_entries(*, description: str, serial: str, os_name: str, release: str) -> list[_Entry]:
    """A busybox root: enough for `lxc launch` and `lxc exec c1 -- true`."""
    entries = [_Entry(d, mode) for d, mode in _ROOT_DIRS.items()]
    entries.append(_Entry("bin/busybox", 0o755, data=_busybox_bytes()))
    entries += [_Entry(f"bin/{name}", 0o777, link="busybox") for name in _BUSYBOX_LINKS]
    entries.append(_Entry("sbin/init", 0o777, link="../bin/busybox"))
    etc = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\n",
        "etc/hostname": "busybox\n",
        # Keep init quiet and alive without a console; `lxc stop` is forced in tests anyway.
        "etc/inittab": "::respawn:/bin/sleep 2147483647\n::shutdown:/bin/true\n",
        "etc/os-release": (f"NAME={json.dumps(os_name)}\nVERSION_ID={json.dumps(release)}\n"
                           f"BUILD_ID={json.dumps(serial)}\n"
                           f"PRETTY_NAME={json.dumps(description)}\n"),
    }
    entries += [_Entry(k, 0o644, data=v.encode()) for k, v in etc.items()]
    return entries


def _tar_bytes(entries: list[_Entry], mtime: int, prefix: str = "") -> bytes:
    """An uncompressed, reproducible tar (fixed owner and mtime, sorted order)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for e in sorted(entries, key=lambda x: x.name):
            info = tarfile.TarInfo(prefix + e.name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "root", "root"
            info.mode = e.mode & 0o7777
            if e.link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, e.link
                tar.addfile(info)
            elif e.data is not None:
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
            else:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
    return buf.getvalue()


_COMPRESSED: dict[tuple[str, str], bytes] = {}


def _compress(kind: str, data: bytes) -> bytes:
    """xz or gzip ``data``, memoised by content (xz of a busybox root costs ~1 s)."""
    key = (kind, hashlib.sha256(data).hexdigest())
    if key not in _COMPRESSED:
        if len(_COMPRESSED) > 32:
            _COMPRESSED.clear()
        if kind == "xz":
            out = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6)
        else:
            out = gzip.compress(data, compresslevel=6, mtime=0)
        _COMPRESSED[key] = out
    return _COMPRESSED[key]


def _xz(data: bytes) -> bytes:
    return _compress("xz", data)


def _gz(data: bytes) -> bytes:
    return _compress("gz", data)


def _write_tree(entries: list[_Entry], root: Path) -> None:
    """Materialise entries on disk (for mksquashfs)."""
    for e in sorted(entries, key=lambda x: x.name):
        p = root / e.name
        p.parent.mkdir(parents=True, exist_ok=True)
        if e.link is not None:
            p.symlink_to(e.link)
        elif e.data is not None:
            p.write_bytes(e.data)
            p.chmod(e.mode)
        else:
            p.mkdir(exist_ok=True)
            p.chmod(e.mode)


def _squashfs(entries: list[_Entry], out: Path, mtime: int) -> None:
    """A reproducible squashfs (root-owned, fixed times) built with mksquashfs."""
    mksquashfs = need("mksquashfs")
    with tempfile.TemporaryDirectory(prefix="rp-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir()
        _write_tree(entries, root)
        subprocess.run(
            [mksquashfs, str(root), str(out), "-noappend", "-quiet", "-no-progress",
             "-all-root", "-comp", "gzip", "-mkfs-time", str(mtime), "-all-time", str(mtime),
             "-processors", "1"],
            check=True, capture_output=True, timeout=CMD_TIMEOUT,
        )


def make_qcow2(virtual_size: int = 1 << 20, payload: bytes = b"") -> bytes:
    """A small valid qcow2 v3 image (4 KiB clusters); ``payload`` is written at guest offset 0.

    Written by hand so tests need no qemu-utils; `qemu-img check` accepts it. Layout, one
    cluster each: header, L1 table, refcount table, refcount block, L2 table, data cluster.
    """
    cluster_bits = 12
    cs = 1 << cluster_bits
    if len(payload) > cs:
        raise ValueError("payload larger than one cluster")
    l2_entries = cs // 8
    l1_size = -(-virtual_size // (cs * l2_entries))
    if l1_size * 8 > cs:
        raise ValueError("virtual size too large for a one-cluster L1 table")
    l1_off, rct_off, rcb_off, l2_off, data_off = (cs * i for i in range(1, 6))
    n_clusters = 6
    header = struct.pack(
        ">4sIQIIQIIQQIIQQQQII",
        b"QFI\xfb", 3,  # magic, version
        0, 0,  # backing file offset, size
        cluster_bits, virtual_size,
        0,  # crypt method
        l1_size, l1_off,
        rct_off, 1,  # refcount table offset, clusters
        0, 0,  # snapshots: count, offset
        0, 0, 0,  # incompatible, compatible, autoclear features
        4, 104,  # refcount order (16-bit), header length
    )
    header += struct.pack(">II", 0, 0)  # end of header extensions
    copied = 1 << 63  # QCOW_OFLAG_COPIED: refcount is exactly 1
    img = bytearray(cs * n_clusters)
    img[0:len(header)] = header
    l1 = [0] * l1_size
    if payload:
        l1[0] = l2_off | copied
        struct.pack_into(">Q", img, l2_off, data_off | copied)
        img[data_off:data_off + len(payload)] = payload
    else:
        n_clusters = 4  # no L2 and no data cluster: trim them
    for i, entry in enumerate(l1):
        struct.pack_into(">Q", img, l1_off + 8 * i, entry)
    struct.pack_into(">Q", img, rct_off, rcb_off)
    for i in range(n_clusters):
        struct.pack_into(">H", img, rcb_off + 2 * i, 1)
    return bytes(img[: cs * n_clusters])


def make_image(
    dest: Path,
    *,
    kind: str,
    arch: str = "x86_64",
    os_name: str = "Busybox",
    release: str = "1.0",
    variant: str = "default",
    description: str = "test image",
    serial: str = "20260101_0000",
) -> list[Path]:
    """Write what distrobuilder would produce for ``kind`` into ``dest``; return the files.

    Kinds: squashfs, tarxz, both, unified, vm, lxc (see IMAGE_KINDS). The serial and
    description go into both metadata and rootfs, so different inputs give different
    fingerprints; the same inputs give the same bytes.
    """
    if kind not in IMAGE_KINDS:
        raise ValueError(f"unknown image kind {kind!r}; expected one of {IMAGE_KINDS}")
    dest.mkdir(parents=True, exist_ok=True)
    created = _creation_date(serial)
    meta_yaml = _metadata_yaml(arch=arch, os_name=os_name, release=release, variant=variant,
                               description=description, serial=serial, created=created)
    meta_entries = [_Entry("metadata.yaml", 0o644, data=meta_yaml), _Entry("templates", 0o755)]
    root = _rootfs_entries(description=description, serial=serial, os_name=os_name,
                           release=release)
    out: list[Path] = []

    def write(name: str, data: bytes) -> None:
        path = dest / name
        path.write_bytes(data)
        out.append(path)

    if kind == "unified":
        entries = [*meta_entries, _Entry("rootfs", 0o755)]
        entries += [_Entry("rootfs/" + e.name, e.mode, e.data, e.link) for e in root]
        write("lxd_combined.tar.gz", _gz(_tar_bytes(entries, created)))
        return out
    if kind == "lxc":
        lxc_meta = {
            "config": f"lxc.include = LXC_TEMPLATE_CONFIG/common.conf\nlxc.arch = {arch}\n",
            "config-user": "lxc.include = LXC_TEMPLATE_CONFIG/userns.conf\n",
            "create-message": f"You just created a {description} container.\n",
            "excludes-user": "",
            "expiry": f"{created + 30 * 86400}\n",
            "templates": "/etc/hostname\n",
        }
        entries = [_Entry(k, 0o644, data=v.encode()) for k, v in lxc_meta.items()]
        write("meta.tar.xz", _xz(_tar_bytes(entries, created)))
        write("rootfs.tar.xz", _xz(_tar_bytes(root, created)))
        return out
    write("lxd.tar.xz", _xz(_tar_bytes(meta_entries, created)))
    if kind in ("squashfs", "both"):
        path = dest / "rootfs.squashfs"
        _squashfs(root, path, created)
        out.append(path)
    if kind in ("tarxz", "both"):
        write("rootfs.tar.xz", _xz(_tar_bytes(root, created)))
    if kind == "vm":
        stamp = f"{os_name} {release} {variant} {serial} {description}\n".encode()
        write("disk.qcow2", make_qcow2(payload=stamp[:4096]))
    return out


def source_manifests(conf: Path | None = None, products: list[dict[str, Any]] | None = None) -> None:
    """Write the ssb.json of every product read from a local `source:` folder (tree.yml `conf`, or
    its `products` entries), as that folder's owner does with `build-versions-manifest`: the tree's
    `publish --refresh-manifests` never writes into a source (issue 20 point 16)."""
    from ssb_s3.config import load_config, parse_config
    from ssb_s3.errors import SSBError
    from ssb_s3.storage.backends import open_store
    from ssb_s3.storage.tree import refresh_manifest

    try:
        tree = load_config(conf) if conf is not None else parse_config({"products": products or []}, "tree.yml")
    except SSBError:
        return  # a tree.yml the tool refuses (what such a test checks): nothing to write
    for product in tree.products:
        if product.source and "://" not in product.source:
            refresh_manifest(open_store(product.source), tree, product)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def combined_sha256(*paths: Path) -> str:
    """sha256 over the files' bytes in order: the image fingerprint (meta then root)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(path.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# LXD / Incus clients


@dataclass
class _CliClient:
    """Shared code for the `lxc` and `incus` CLIs, each with a private config folder."""

    conf_dir: Path
    ca_file: Path | None = None
    tool: str = "lxc"
    conf_var: str = "LXD_CONF"
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.exe = need(self.tool)
        self.conf_dir.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        """Environment for the CLI: private config, test CA trusted, no proxies."""
        env = {k: v for k, v in os.environ.items() if k.lower() not in
               ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
        env[self.conf_var] = str(self.conf_dir)
        if self.ca_file is not None:
            env["SSL_CERT_FILE"] = str(self.ca_file)
        env.update(self.extra_env)
        return env

    def run(self, *args: str, check: bool = True,
            timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run the CLI (stdin /dev/null: `init`/`launch` otherwise wait on it)."""
        proc = subprocess.run([self.exe, *args], env=self.env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise RealPartError(
                f"{self.tool} {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout.strip()}\nstderr: {proc.stderr.strip()}"
            )
        return proc

    def remote_add(self, name: str, url: str) -> None:
        """Add (or replace) a public simplestreams remote: the https URL of a published tree.

        Replacing matters with a session-wide daemon: `remote add` refuses an existing name
        ("Error: Remote t exists as <URL>").
        """
        if name in self.remotes():
            self.remote_remove(name)
        self.run("remote", "add", name, url, "--protocol", "simplestreams", "--public")

    def remotes(self) -> dict[str, Any]:
        """Configured remotes (``remote list --format json``: name -> settings)."""
        out = self.run("remote", "list", "--format", "json").stdout
        return json.loads(out) if out.strip() else {}

    def remote_remove(self, name: str) -> None:
        """Remove a remote (ignores a missing one)."""
        self.run("remote", "remove", name, check=False)

    def image_list(self, remote: str) -> list[dict[str, Any]]:
        """Images the client sees on ``remote`` (parsed ``image list REMOTE: --format json``)."""
        out = self.run("image", "list", f"{remote.rstrip(':')}:", "--format", "json").stdout
        return json.loads(out) if out.strip() else []

    def alias_list(self, remote: str) -> list[dict[str, Any]]:
        """Aliases on ``remote`` (``image alias list REMOTE: --format json``)."""
        out = self.run("image", "alias", "list", f"{remote.rstrip(':')}:",
                       "--format", "json").stdout
        return json.loads(out) if out.strip() else []

    def image_info(self, ref: str) -> str:
        """Text of ``image info REMOTE:ALIAS_OR_FP``."""
        return self.run("image", "info", ref).stdout

    def export(self, remote_alias_or_fp: str, outdir: Path) -> list[Path]:
        """Download an image (the client checks sha256 and fingerprint); return new files."""
        outdir.mkdir(parents=True, exist_ok=True)
        before = set(outdir.iterdir())
        self.run("image", "export", remote_alias_or_fp, f"{outdir}/")
        return sorted(set(outdir.iterdir()) - before)

    def clear_cache(self) -> None:
        """Forget cached index/catalog files (the client caches simplestreams responses)."""
        shutil.rmtree(self.conf_dir / "cache", ignore_errors=True)


    def trust_remote_ca(self, remote: str, ca_file: Path | None = None) -> Path:
        """Write $LXD_CONF (or $INCUS_CONF)/servercerts/<remote>.crt: the client hands it to the daemon.

        The daemon ignores the client's SSL_CERT_FILE; on `image copy`/`launch` it gets this
        certificate in the request and adds it to its trusted roots for that download.
        """
        src = ca_file or self.ca_file
        if src is None:
            raise ValueError("no CA file to trust")
        dst = self.conf_dir / "servercerts" / f"{remote}.crt"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return dst


class LxdClient(_CliClient):
    """The `lxc` CLI with its own LXD_CONF; SSL_CERT_FILE makes it trust the test CA."""

    def __init__(self, conf_dir: Path, ca_file: Path | None = None,
                 lxd_dir: Path | None = None) -> None:
        extra = {"LXD_DIR": str(lxd_dir)} if lxd_dir is not None else {}
        super().__init__(conf_dir=conf_dir, ca_file=ca_file, tool="lxc", conf_var="LXD_CONF",
                         extra_env=extra)
        self.lxd_dir = lxd_dir


class IncusClient(_CliClient):
    """The `incus` CLI with its own INCUS_CONF; `export` needs an existing folder (made here).

    ``incus_dir`` (INCUS_DIR) points it at a private daemon's socket.
    """

    def __init__(self, conf_dir: Path, ca_file: Path | None = None,
                 incus_dir: Path | None = None) -> None:
        extra = {"INCUS_DIR": str(incus_dir)} if incus_dir is not None else {}
        super().__init__(conf_dir=conf_dir, ca_file=ca_file, tool="incus",
                         conf_var="INCUS_CONF", extra_env=extra)
        self.incus_dir = incus_dir


# --------------------------------------------------------------------------------------------
# LXD and Incus daemons
#
# Both run side by side in one session without clashing: each has its own state folder (socket,
# database, storage pool, containers, logs, simplestreams cache) and client config folder, and
# neither has a network, a listening address or (no kernel support here) AppArmor. The one
# shared name space is the host's cgroup tree (lxc.payload.<name>, lxc.monitor.<name>): liblxc
# takes a free name (c1-1) when the other daemon already runs an instance of the same name, which
# test_e2e_incus_daemon checks. Stopping one daemon kills only processes naming its own folder.


_PRESEED = """\
config:
  images.auto_update_interval: "0"
networks: []
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root:
      path: /
      pool: default
      type: disk
"""


@dataclass(frozen=True)
class _DaemonKind:
    """How to drive one daemon: the LXD one (`lxd ...`) or the Incus one (`incusd`, `incus admin ...`)."""

    name: str  # names the state folder and the log files, and appears in error messages
    daemon: str  # the daemon's executable
    admin: tuple[str, ...]  # argv prefix of `waitready`, `init --preseed`, `shutdown`
    dir_var: str  # LXD_DIR / INCUS_DIR: where the daemon keeps its state and its socket
    conf_var: str  # LXD_CONF / INCUS_CONF: the client's config folder


def _lxd_kind() -> _DaemonKind:
    lxd = need("lxd")
    need("lxc")
    return _DaemonKind("lxd", lxd, (lxd,), "LXD_DIR", "LXD_CONF")


def _incus_kind() -> _DaemonKind:
    """Debian's incus-base package: `incusd` in /usr/libexec/incus, admin commands in the CLI."""
    incusd = need("incusd", also_in="/usr/libexec/incus")
    return _DaemonKind("incus", incusd, (need("incus"), "admin"), "INCUS_DIR", "INCUS_CONF")


@dataclass
class _Daemon:
    """A private daemon; ``client`` talks to it (LXD_DIR or INCUS_DIR set) with its own config."""

    state_dir: Path
    log_file: Path
    client: _CliClient
    ca_file: Path
    proc: subprocess.Popen[bytes]

    def remote_add(self, name: str, url: str) -> None:
        """Add a simplestreams remote that both the client and the daemon trust."""
        self.client.remote_add(name, url)
        self.client.trust_remote_ca(name, self.ca_file)

    def delete_local_images(self) -> None:
        """Remove every image in the daemon's store (else a copy downloads nothing)."""
        for img in self.client.image_list("local"):
            self.client.run("image", "delete", f"local:{img['fingerprint']}")

    def instances(self) -> list[dict[str, Any]]:
        """The daemon's instances (``list --format json``)."""
        out = self.client.run("list", "--format", "json").stdout
        return json.loads(out) if out.strip() else []

    def delete_instances(self) -> None:
        """Force-delete every instance."""
        for inst in self.instances():
            self.client.run("delete", "--force", inst["name"])

    def log_tail(self) -> str:
        """Last lines of the daemon log."""
        return _tail(self.log_file)

    def clear_cache(self) -> None:
        """Drop the daemon's simplestreams cache (<state dir>/cache/<hash of URL>/index.json...).

        The daemon keeps index.json and the catalog for an hour per remote URL; a test that
        republishes at the same URL must clear it to see the new tree.
        """
        for entry in (self.state_dir / "cache").glob("*"):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)


@dataclass
class LxdDaemon(_Daemon):
    """A private LXD daemon (LXD_DIR = ``lxd_dir``), driven through ``client`` (`lxc`)."""

    client: LxdClient

    @property
    def lxd_dir(self) -> Path:
        return self.state_dir


@dataclass
class IncusDaemon(_Daemon):
    """A private Incus daemon (INCUS_DIR = ``incus_dir``), driven through ``client`` (`incus`)."""

    client: IncusClient

    @property
    def incus_dir(self) -> Path:
        return self.state_dir


@contextlib.contextmanager
def daemon_workdir(prefix: str) -> Iterator[Path]:
    """A world-traversable folder in /tmp for a daemon's state, removed afterwards.

    Not under pytest's basetemp: pytest resets /tmp/pytest-of-<user> to 0700 at every
    session start, and unprivileged containers (uid 100000+) must traverse the path.
    """
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    workdir.chmod(0o755)
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _open_path(path: Path) -> None:
    """Make every folder from / to ``path`` traversable by others (o+x).

    Unprivileged containers run as uid 100000+; pytest's /tmp/pytest-of-root is 0700,
    which makes `lxc start` fail with permission errors on the rootfs.
    """
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if mode & 0o005 != 0o005:
            p.chmod(mode | 0o005)


def _pids_using(marker: str) -> list[int]:
    """PIDs whose command line mentions ``marker`` (the daemon's private folder)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(d.name))
    return pids


def _unmount_under(path: Path) -> None:
    """Lazily unmount whatever is mounted under ``path`` (deepest first)."""
    prefix = str(path.resolve()).rstrip("/") + "/"
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mnt = line.split()[4].replace("\\040", " ")
            if mnt.startswith(prefix):
                mounts.append(mnt)
    for mnt in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], capture_output=True, check=False)


@contextlib.contextmanager
def run_lxd_daemon(workdir: Path, ca_file: Path) -> Iterator[LxdDaemon]:
    """Start a private LXD daemon (dir pool, no network) and tear it down fully on exit.

    No bridge is needed: a container without a NIC launches and `exec` works.
    """
    kind = _lxd_kind()
    state = workdir / "lxd"
    client = LxdClient(workdir / "lxdconf", ca_file=ca_file, lxd_dir=state)
    with _run_daemon(kind, workdir, ca_file, client) as (log_file, proc):
        yield LxdDaemon(state_dir=state, log_file=log_file, client=client, ca_file=ca_file, proc=proc)


@contextlib.contextmanager
def run_incus_daemon(workdir: Path, ca_file: Path) -> Iterator[IncusDaemon]:
    """Start a private Incus daemon (driver lxc, dir pool, no network); tear it down fully on exit.

    `incus admin init --minimal` would want a bridge: the preseed gives a dir pool and a
    root-disk-only default profile instead. No VMs here (no vhost_vsock).
    """
    kind = _incus_kind()
    state = workdir / "incus"
    client = IncusClient(workdir / "incusconf", ca_file=ca_file, incus_dir=state)
    with _run_daemon(kind, workdir, ca_file, client) as (log_file, proc):
        yield IncusDaemon(state_dir=state, log_file=log_file, client=client, ca_file=ca_file, proc=proc)


@contextlib.contextmanager
def _run_daemon(kind: _DaemonKind, workdir: Path, ca_file: Path,
                client: _CliClient) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """Start ``kind``'s daemon on <workdir>/<name>, wait for it, preseed it; stop it on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / kind.name
    state.mkdir(exist_ok=True)
    if len(str(state / "unix.socket")) > 100:
        raise RealPartError(f"{kind.dir_var} path too long for a unix socket: {state}")
    _open_path(state)
    log_file, out_file = workdir / f"{kind.name}.log", workdir / f"{kind.name}.out"
    # The daemon fetches instance types from images.linuxcontainers.org at start: send that to
    # a closed loopback port instead of out. Loopback hosts are never proxied.
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
    env.update({kind.dir_var: str(state), kind.conf_var: str(client.conf_dir), "HTTP_PROXY": dead_proxy,
                "HTTPS_PROXY": dead_proxy, "NO_PROXY": "127.0.0.1,localhost,::1"})
    env.pop("SSL_CERT_FILE", None)  # trust comes per remote, as for a real daemon
    with out_file.open("wb") as out:
        proc = subprocess.Popen([kind.daemon, "--group", "root", "--logfile", str(log_file)],
                                env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        ready = subprocess.run([*kind.admin, "waitready", f"--timeout={int(START_TIMEOUT)}"], env=env,
                               capture_output=True, text=True, check=False,
                               timeout=START_TIMEOUT + 10)
        if ready.returncode != 0 or proc.poll() is not None:
            raise RealPartError(f"{kind.name} not ready: {ready.stderr.strip()}\n{_tail(log_file)}\n"
                                f"{_tail(out_file)}")
        init = subprocess.run([*kind.admin, "init", "--preseed"], input=_PRESEED, env=env,
                              capture_output=True, text=True, check=False, timeout=120)
        if init.returncode != 0:
            raise RealPartError(f"{kind.name} init --preseed failed: {init.stderr.strip()}")
        yield log_file, proc
    finally:
        _stop_daemon(kind, state, proc, client, env)


def _stop_daemon(kind: _DaemonKind, state: Path, proc: subprocess.Popen[bytes], client: _CliClient,
                 env: dict[str, str]) -> None:
    """Stop instances, shut the daemon down, kill leftovers, unmount: repeatable runs.

    Only processes whose command line names this daemon's own folder are killed (its liblxc
    monitors and forked helpers), so the other daemon of the session and its instances live on.
    """
    if proc.poll() is None:
        with contextlib.suppress(Exception):
            client.run("stop", "--all", "--force", check=False, timeout=120)
        with contextlib.suppress(Exception):
            subprocess.run([*kind.admin, "shutdown", "--timeout=60"], env=env, capture_output=True,
                           check=False, timeout=90)
    _stop_process_group(proc, grace=10)
    marker = str(state)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _pids_using(marker)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        if pids:
            time.sleep(1)
    _unmount_under(state)


# --------------------------------------------------------------------------------------------
# Static HTTPS server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static file handler that does not print a line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _LoggingHandler(_QuietHandler):
    """Static file handler that appends "METHOD path status" of each request to ``access_log``."""

    access_log: list[str]

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.access_log.append(f"{self.command} {urllib.parse.unquote(self.path)} {code}")


class _S3LikeHandler(_LoggingHandler):
    """As S3 answers anonymous readers under a GetObject-only bucket policy (AWS, Ceph RGW): each
    regular file is an object; anything else (a missing key, a folder) is 403 AccessDenied."""

    def send_head(self) -> Any:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            body = b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>' \
                   b"<Message>Access Denied</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body)
        return super().send_head()


@contextlib.contextmanager
def serve_https_static(root: Path, tls: TlsFiles, access_log: list[str] | None = None, *,
                       missing: int = 404) -> Iterator[str]:
    """Serve ``root`` over HTTPS on 127.0.0.1:<free port>; yield the base URL (no slash).

    A reference server for trees written to a folder (no S3 in between). ``access_log``, if
    given, gets one "METHOD path status" line per request (path URL-decoded), for tests that
    assert what a client downloaded. ``missing=403``: every key that is not a file answers 403,
    as S3 answers anonymous readers without s3:ListBucket (AWS, Ceph RGW; SeaweedFS answers 404).
    """
    handler: Any
    if missing == 403:
        s3_like = type("_S3Like", (_S3LikeHandler,), {"access_log": [] if access_log is None else access_log})
        handler = functools.partial(s3_like, directory=str(root))
    elif access_log is None:
        handler = functools.partial(_QuietHandler, directory=str(root))
    else:
        logging_handler = type("_Logging", (_LoggingHandler,), {"access_log": access_log})
        handler = functools.partial(logging_handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(tls.server_cert), str(tls.server_key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, name="https-static", daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def wait_for_url(url: str, ca_file: Path | None = None, timeout: float = 10.0,
                 proc: subprocess.Popen[Any] | None = None, log: Path | None = None) -> bytes:
    """GET ``url`` until it answers 200 (trusting ``ca_file`` for https), or raise with the last
    error; gives up at once if ``proc`` (the server being waited for) has exited."""
    ctx = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
                data: bytes = resp.read()
            return data
        except (urllib.error.URLError, OSError) as exc:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                raise RealPartError(f"{url} not reachable: {exc}\n{_tail(log) if log else ''}") from exc
            time.sleep(0.2)
