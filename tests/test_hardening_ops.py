"""Issue 9, points 10-13 and 17: what a publish says while it waits, fails, succeeds quietly or runs long.

* 10: a lease left by a dead publisher: the waiter names the holder, since when and until when at
  once, then says it is still waiting every few seconds; on a local folder a lease whose pid is
  dead on this very host is taken over at once (a live one is not).
* 11: an S3 outage mid-publish (every request fails from the first artifact copy on): the error
  shown is the failed copy, the failed lease release comes second.
* 12: `-q` prints nothing on success.
* 13: `--json` prints the report, `"published": false` and the problems, when a publish is refused.
* 17: off a terminal, long copies (publish) and uploads (build-product) print a progress line every
  few seconds without -v ($SSB_PROGRESS_INTERVAL, set to 0 here), and nothing with -q.

Everything runs the real CLI in a subprocess; S3 cases against the real server (SeaweedFS), the
outage through the fault-injecting proxy of test_faults.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import SSB, ssb
from realparts import S3Server, make_image
from test_faults import FaultPlan, Rule, check_failure, env, open_s3, proxy_for  # noqa: F401 (env: fixture)

from ssb_s3.commands.publish import PublishOptions, publish
from ssb_s3.config import load_config
from ssb_s3.errors import SSBError
from ssb_s3.storage.lease import LEASE_KEY, LeaseInfo

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "local"
S3_STORAGE = """\
storage:
  endpoint_url: {endpoint}
  region: us-east-1
  addressing_style: path
  checksum_mode: when_required
"""


def cli_env(server: S3Server | None = None, **extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SSB_", "AWS_"))}
    if server is not None:
        environ.update(AWS_ACCESS_KEY_ID=server.access_key, AWS_SECRET_ACCESS_KEY=server.secret_key,
                       AWS_EC2_METADATA_DISABLED="true")
    environ.update(extra)
    return environ


def run(*args: str, environ: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return ssb(*args, env=environ or cli_env(), clean=True, timeout=timeout)


@dataclass
class Timed:
    """A CLI run whose stderr lines are stamped with the seconds since start."""

    returncode: int
    stdout: str
    lines: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stderr(self) -> str:
        return "".join(line for _, line in self.lines)


def run_timed(*args: str, environ: dict[str, str], timeout: float = 120) -> Timed:
    started = time.monotonic()
    proc = subprocess.Popen([*SSB, *args], env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stdout is not None
    lines: list[tuple[float, str]] = []
    chunks: list[str] = []
    out = threading.Thread(target=lambda: chunks.append(proc.stdout.read() if proc.stdout else ""))
    out.start()
    for line in proc.stderr:
        lines.append((time.monotonic() - started, line))
    proc.wait(timeout=timeout)
    out.join(timeout=10)
    return Timed(proc.returncode, "".join(chunks), lines, time.monotonic() - started)


def local_tree(tmp: Path) -> tuple[Path, Path]:
    """The README's example tree (products in a `source` folder) and an empty target: (tree.yml, target)."""
    shutil.copytree(EXAMPLE / "images", tmp / "images")
    conf = tmp / "tree.yml"
    conf.write_text((EXAMPLE / "tree.yml").read_text())
    return conf, tmp / "public"


def lease_bytes(*, host: str, pid: int, expires: float, since: float | None, owner: str = "ssb-s3-0123456789ab",
                purpose: str = "publish") -> bytes:
    body: dict[str, Any] = {"owner": owner, "host": host, "pid": pid, "purpose": purpose, "expires": expires}
    if since is not None:
        body["since"] = since
    return json.dumps(body).encode()


def dead_pid() -> int:
    """A pid that existed a moment ago and is gone now (not reused within the test's seconds)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
    return child.pid


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


# --------------------------------------------------------------------------------------------
# Point 10: waiting for a lease


def upload_version(server: S3Server, bucket: str, tmp: Path, directory: str, serial: str) -> None:
    client = server.client()
    for path in make_image(tmp / "built" / serial, kind="squashfs", serial=serial, description=serial):
        client.upload_file(str(path), bucket, f"{directory}/{serial}/{path.name}")


S3_TREE = S3_STORAGE + """\
products:
  - name: busybox:1.36:amd64:default
    arch: amd64
    release: "1.36"
    os: Busybox
    directory: busybox/amd64
    aliases: [busybox]
"""


def test_waiting_for_a_dead_publishers_lease_says_who_since_until_and_counts_down(
        s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text(S3_TREE.format(endpoint=s3_server.endpoint))
    upload_version(s3_server, bucket, tmp_path, "busybox/amd64", "20260101_0000")
    now = time.time()
    since, expires = now - 120, now + 3600
    # a publisher on another host died an hour before its lease expires
    s3_server.client().put_object(Bucket=bucket, Key=LEASE_KEY, Body=lease_bytes(
        host="builder-7", pid=4242, since=since, expires=expires, owner="ssb-s3-deadbeef0000"))
    out = run_timed("-c", str(conf), "-t", f"s3://{bucket}", "publish", "--refresh-manifests", "--lock-timeout", "12",
                    environ=cli_env(s3_server))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    named = [(t, line) for t, line in out.lines if "ssb-s3-deadbeef0000" in line]
    assert named, out.stderr
    first_at, first = named[0]
    # once the wait lasted 2 s (the CLI starts in ~1-2 s), without -v: who, on which host, since when, until when
    assert first_at < 8, f"the first word about the lease came after {first_at:.1f}s: {first!r}"
    assert first.startswith("WARNING: "), first
    for part in ("pid 4242 on builder-7", f"since {utc(since)}", f"until {utc(expires)}", "expires in"):
        assert part in first, (part, first)
    # then, 10 s after the wait began (8 s after the first line), a line every ~10 s, before the final error
    waiting = [(t, line) for t, line in out.lines if "still waiting" in line]
    assert waiting and first_at + 6.5 <= waiting[0][0] <= first_at + 12.5, out.stderr
    assert re.search(r"expires in \d+s, giving up in \d+s", waiting[0][1]), waiting[0][1]
    error = out.lines[-1][1]
    assert error.startswith("error: ") and "is held" in error and "force-unlock" in error, error
    assert out.seconds >= 12
    # nothing was taken over: the dead publisher's lease is still there
    assert s3_server.client().get_object(Bucket=bucket, Key=LEASE_KEY)["Body"].read().find(b"deadbeef") > 0


def test_local_lease_of_a_dead_pid_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    conf, target = local_tree(tmp_path)
    lease = target / LEASE_KEY
    lease.parent.mkdir(parents=True)
    pid = dead_pid()
    lease.write_bytes(lease_bytes(host=socket.gethostname(), pid=pid, since=time.time() - 60,
                                  expires=time.time() + 3600))
    started = time.monotonic()
    out = run("-c", str(conf), "-t", str(target), "publish", "--lock-timeout", "30")
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert took < 15, f"publish waited {took:.1f}s for a lease whose process is dead"
    assert "took over the lease of a dead process" in out.stderr and f"pid {pid} is gone" in out.stderr
    assert "published: 2 products" in out.stdout
    assert not lease.exists()


def test_local_lease_of_a_live_pid_is_not_taken_over_and_old_leases_stay_readable(tmp_path: Path) -> None:
    """Our own (live) pid on this host; a lease written before `since` existed."""
    conf, target = local_tree(tmp_path)
    lease = target / LEASE_KEY
    lease.parent.mkdir(parents=True)
    expires = time.time() + 3600
    old = lease_bytes(host=socket.gethostname(), pid=os.getpid(), since=None, expires=expires)
    lease.write_bytes(old)
    assert LeaseInfo.parse(old) == LeaseInfo("ssb-s3-0123456789ab", socket.gethostname(), os.getpid(), "publish",
                                             expires)
    out = run("-c", str(conf), "-t", str(target), "publish", "--lock-timeout", "1")
    assert out.returncode == 1, out.stderr
    assert f"(pid {os.getpid()} on {socket.gethostname()}) until {utc(expires)}" in out.stderr
    assert lease.read_bytes() == old
    assert not (target / "streams").exists()


# --------------------------------------------------------------------------------------------
# Point 11: an outage mid-publish


@dataclass
class Outage(FaultPlan):
    """Every request fails (connection reset before it reaches the server) from the first one
    whose method and key match `trigger` on: an S3 endpoint going away mid-publish."""

    trigger: Rule | None = None
    started: bool = False

    def decide(self, method: str, key: str) -> Rule | None:
        with self._lock:
            rule = self.trigger
            if not self.started and rule and method == rule.method and re.search(rule.pattern, key):
                self.started = True
            if not self.started:
                return None
            self.counts["outage"] += 1
            return Rule(method, key, "drop-before")


def test_outage_mid_publish_reports_the_failed_copy_first(env: S3Server, bucket: str,  # noqa: F811 (fixture)
                                                          tmp_path: Path) -> None:
    """Products in a local `source` folder, copied into the bucket; the endpoint dies at the first
    copy. In-process, for botocore's backoff compressed in time (`env`); the CLI prints this
    SSBError's text after "error: "."""
    conf, _ = local_tree(tmp_path)
    conf.write_text(S3_STORAGE.format(endpoint=env.endpoint) + conf.read_text())
    plan = Outage(trigger=Rule("PUT", r"^sample/amd64/.*\.tar\.xz$", "drop-before"))
    with proxy_for(env, plan) as proxy, pytest.raises(SSBError) as failed:
        publish(load_config(str(conf)), open_s3(proxy.url, bucket), PublishOptions(lock_timeout=5))
    assert plan.started and plan.counts["outage"] >= 2
    message = check_failure(failed.value, env)
    first, also, cleanup = message.partition("; also, releasing the lease failed: ")
    assert re.fullmatch(rf"s3://{bucket}/sample/amd64/[^ ]+\.tar\.xz: upload failed: \w+", first), message
    assert also and cleanup.startswith(f"s3://{bucket}/.ssb-s3/lease.json: "), message
    # nothing is served: the index was never written
    assert "Contents" not in env.client().list_objects_v2(Bucket=bucket, Prefix="streams/")


# --------------------------------------------------------------------------------------------
# Points 12 and 13: -q and --json


def test_quiet_publish_prints_nothing_on_success(tmp_path: Path) -> None:
    conf, target = local_tree(tmp_path)
    out = run("-q", "-c", str(conf), "-t", str(target), "publish", environ=cli_env(SSB_PROGRESS_INTERVAL="0"))
    assert out.returncode == 0, out.stderr
    assert (out.stdout, out.stderr) == ("", "")
    assert (target / "streams/v1/index.json").exists()
    loud = run("-c", str(conf), "-t", str(target), "publish")  # the same publish without -q does talk
    assert loud.returncode == 0 and loud.stdout.startswith("unchanged: 2 products")


def break_amd64(images: Path) -> None:
    """One product's ssb.json declares a wrong size for one of its files."""
    manifest_path = images / "sample/amd64/ssb.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["versions"]["20260102_00:00"]["items"]["root.tar.xz"]["size"] += 1
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("extra", [(), ("--dry-run",)], ids=["publish", "dry-run"])
def test_json_report_of_a_refused_publish(tmp_path: Path, extra: tuple[str, ...]) -> None:
    conf, target = local_tree(tmp_path)
    break_amd64(tmp_path / "images")
    out = run("-c", str(conf), "-t", str(target), "publish", "--json", *extra)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error: publish" in out.stderr and "refused" in out.stderr
    report = json.loads(out.stdout)
    assert report["published"] is False and report["index_written"] is False
    assert report["failed_products"] == ["sample:1.0:amd64:default"]
    assert any("root.tar.xz" in p and "ssb.json says" in p for p in report["problems"]), report["problems"]
    assert not (target / "streams").exists()


def test_json_report_says_published_when_it_was(tmp_path: Path) -> None:
    conf, target = local_tree(tmp_path)
    done = json.loads(run("-c", str(conf), "-t", str(target), "publish", "--json").stdout)
    assert done["published"] is True and done["index_written"] is True
    dry = json.loads(run("-c", str(conf), "-t", str(target), "publish", "--json", "--dry-run").stdout)
    assert dry["published"] is False
    break_amd64(tmp_path / "images")
    partial = run("-c", str(conf), "-t", str(target), "publish", "--json", "--keep-going")
    assert partial.returncode == 1
    report = json.loads(partial.stdout)
    assert report["published"] is True and report["kept_previous_entry"] == ["sample:1.0:amd64:default"]


# --------------------------------------------------------------------------------------------
# Point 17: progress off a terminal

PROGRESS = re.compile(r"^(?P<label>.+): +\d+% [\d.]+/[\d.]+ MiB (?P<done>\d+)/(?P<files>\d+) files "
                      r"[\d.]+ MiB/s \d+s left$")


def progress_lines(stderr: str) -> list[re.Match[str]]:
    return [m for line in stderr.splitlines() if (m := PROGRESS.match(line))]


def test_publish_copies_print_progress_lines_off_a_terminal(tmp_path: Path) -> None:
    conf, target = local_tree(tmp_path)
    quiet = run("-q", "-c", str(conf), "-t", str(target / "q"), "publish", environ=cli_env(SSB_PROGRESS_INTERVAL="0"))
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    out = run("-c", str(conf), "-t", str(target / "p"), "publish", environ=cli_env(SSB_PROGRESS_INTERVAL="0"))
    assert out.returncode == 0, out.stderr
    lines = progress_lines(out.stderr)
    copied = len({item["path"] for manifest in (tmp_path / "images/sample").glob("*/ssb.json")
                  for version in json.loads(manifest.read_text())["versions"].values()
                  for item in version["items"].values()})
    assert lines and all(m["label"] == f"copying into {target / 'p'}" for m in lines), out.stderr
    assert {int(m["files"]) for m in lines} == {copied}
    assert lines[-1]["done"] == str(copied) and " 100% " in lines[-1].string
    assert "INFO" not in out.stderr  # no -v needed
    # the default interval (5 s) keeps a short copy silent
    silent = run("-c", str(conf), "-t", str(target / "s"), "publish")
    assert silent.returncode == 0 and progress_lines(silent.stderr) == [], silent.stderr


BUILD_TREE = """\
products:
  - name: busybox:1.36:amd64:default
    arch: amd64
    release: "1.36"
    os: Busybox
    directory: busybox/amd64
    aliases: [busybox]
"""


def test_build_product_upload_prints_progress_lines_off_a_terminal(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text(BUILD_TREE)
    built = tmp_path / "built"
    files = make_image(built, kind="squashfs")
    args = ("build-product", "busybox:1.36:amd64:default", "--from-dir", str(built), "--no-publish")
    quiet = run("-q", "-c", str(conf), "-t", str(tmp_path / "q"), *args, environ=cli_env(SSB_PROGRESS_INTERVAL="0"))
    assert quiet.returncode == 0 and (quiet.stdout, quiet.stderr) == ("", ""), quiet.stderr
    out = run("-c", str(conf), "-t", str(tmp_path / "p"), *args, environ=cli_env(SSB_PROGRESS_INTERVAL="0"))
    assert out.returncode == 0, out.stderr
    lines = progress_lines(out.stderr)
    assert lines and all(m["label"].startswith("busybox:1.36:amd64:default ") for m in lines), out.stderr
    assert lines[-1]["done"] == lines[-1]["files"] == str(len(files)) and " 100% " in lines[-1].string
