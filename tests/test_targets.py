"""Where a tree goes, as a user names it: a local folder keeps nothing unpublishable in it, a likely
typo of s3:// is refused, a bucket that does not exist is said so before anything is written,
credential errors say what to set, and the S3 endpoint is chosen as the AWS CLI chooses it.

Run through the command line against a real SeaweedFS (fixtures `s3_server`, `bucket`).
"""

from __future__ import annotations

import io
import secrets
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import ssb, tree_product, write_tree_yml
from realparts import S3Server, make_image

from ssb_s3.config import StorageConfig
from ssb_s3.errors import StoreError
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.backends.local import LocalStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "local" / "tree.yml"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """ssb-s3 in a clean AWS environment (no AWS_* from the caller, no ~/.aws) plus `env`."""
    base = {"AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-creds",
            "AWS_EC2_METADATA_DISABLED": "true"}
    return ssb(*args, env={**base, **(env or {})}, clean=True, cwd=cwd or "/", timeout=120)


def one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


def with_storage(setting: str) -> str:
    """The example tree.yml with one storage setting (run from a copy beside a link to its images)."""
    return EXAMPLE.read_text().replace("\nproducts:\n", f"\nstorage: {{{setting}}}\nproducts:\n", 1)


def bucket_exists(server: S3Server, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        server.client().head_bucket(Bucket=name)
    except ClientError:
        return False
    return True


# -- a local folder ----------------------------------------------------------------------------


def test_a_local_tree_holds_no_lock_file_a_static_server_would_serve(tmp_path: Path) -> None:
    out = run("-c", str(EXAMPLE), "-t", str(tmp_path / "public"), "publish")
    assert out.returncode == 0, out.stderr
    served = sorted(p.relative_to(tmp_path / "public").as_posix() for p in (tmp_path / "public").rglob("*")
                    if p.is_file())
    assert "streams/v1/index.json" in served
    assert not [name for name in served if name.endswith(".lock")], served


def test_conditional_writes_to_one_folder_are_serialised_whatever_path_names_it(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "tree")
    writer, holder = LocalStore(tmp_path / "tree"), LocalStore(tmp_path / "alias")
    done = threading.Event()

    def write() -> None:
        writer.put_new("streams/v1/index.json", b"{}")
        done.set()

    with holder._write_lock():  # another publisher is between its check and its rename
        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.3), "the conditional write did not wait for the folder's lock"
    thread.join(10)
    assert done.is_set()
    assert [p.name for p in (tmp_path / "tree").rglob("*.lock")] == []


@pytest.mark.parametrize("target", ["s3:/images", "S3:images", "s3:images/sub", "S3//images"])
def test_a_likely_typo_of_an_s3_url_is_refused(tmp_path: Path, target: str) -> None:
    line = one_error_line(run("-c", str(EXAMPLE), "-t", target, "publish", cwd=tmp_path))
    assert target in line and "s3://" in line, line
    assert list(tmp_path.iterdir()) == [], "a local folder was written"


def test_a_folder_named_like_s3_is_still_reachable_as_a_relative_path(tmp_path: Path) -> None:
    out = run("-c", str(EXAMPLE), "-t", "./s3:images", "publish", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "s3:images" / "streams" / "v1" / "index.json").is_file()


# -- S3 ----------------------------------------------------------------------------------------


BUSYBOX = tree_product(directory="busybox/amd64")


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "unconditional"])
@pytest.mark.parametrize("command", ["publish", "build-product", "store-check"])
def test_a_bucket_that_does_not_exist_is_said_so_and_not_created(s3_server: S3Server, tmp_path: Path,
                                                                  conditional: bool, command: str) -> None:
    """SeaweedFS creates a bucket on the first PUT into it: a typo'd bucket name must fail first."""
    tree = tmp_path / "tree.yml"
    write_tree_yml(tree, BUSYBOX, storage={"addressing_style": "path", "checksum_mode": "when_required",
                                           "conditional_writes": conditional})
    args = {"build-product": ["build-product", "busybox:1.36:amd64:default", "--from-dir", str(tmp_path / "built")],
            }.get(command, [command])
    make_image(tmp_path / "built", kind="squashfs")
    name = f"t-nosuch-{secrets.token_hex(4)}"
    line = one_error_line(run("-c", str(tree), "-t", f"s3://{name}", "--endpoint-url", s3_server.endpoint, *args,
                              env=s3_server.credentials))
    assert f"bucket '{name}' does not exist" in line, line
    assert ".ssb-s3" not in line, line
    assert not bucket_exists(s3_server, name), "the run created the bucket"


@pytest.mark.parametrize("conditional", [True, False], ids=["conditional", "unconditional"])
def test_no_write_creates_a_bucket_that_does_not_exist(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch,
                                                       conditional: bool) -> None:
    """Whatever a caller read before (or did not): the first write of a store checks the bucket."""
    s3_server.use_credentials(monkeypatch)
    name = f"t-nosuch-{secrets.token_hex(4)}"
    storage = StorageConfig(endpoint_url=s3_server.endpoint, region=s3_server.region, addressing_style="path",
                            conditional_writes=conditional)
    store = open_store(f"s3://{name}", storage)
    with pytest.raises(StoreError, match=f"^s3://{name}: bucket '{name}' does not exist$"):
        store.put("streams/v1/index.json", b"{}")
    with pytest.raises(StoreError, match="does not exist"):
        store.put("sample/amd64/1/lxd.tar.xz", io.BytesIO(b"x"), content_type="application/x-xz",
                     cache_control="no-cache")
    assert not bucket_exists(s3_server, name), "a write created the bucket"


def test_no_credentials_says_what_to_set(s3_server: S3Server, bucket: str) -> None:
    line = one_error_line(run("-c", str(EXAMPLE), "-t", f"s3://{bucket}", "--endpoint-url", s3_server.endpoint,
                              "publish"))
    for what in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "--profile"):
        assert what in line, line
    assert ".ssb-s3" not in line and "probe" not in line, line


@pytest.mark.parametrize("wrong", ["secret", "key"])
def test_wrong_credentials_say_what_to_set_and_name_no_internal_object(s3_server: S3Server, bucket: str,
                                                                      wrong: str) -> None:
    creds = dict(s3_server.credentials)
    if wrong == "secret":
        creds["AWS_SECRET_ACCESS_KEY"] = "wrong-secret-value-123"
    else:
        creds["AWS_ACCESS_KEY_ID"] = "AKIDNOSUCHKEY0000000"
    line = one_error_line(run("-c", str(EXAMPLE), "-t", f"s3://{bucket}", "--endpoint-url", s3_server.endpoint,
                              "publish", env=creds))
    assert f"s3://{bucket}" in line and "AWS_ACCESS_KEY_ID" in line and "--profile" in line, line
    assert ".ssb-s3" not in line and "probe" not in line and "wrong-secret-value-123" not in line, line


def test_the_endpoint_follows_the_aws_cli_order(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    """--endpoint-url > AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL > tree.yml storage.endpoint_url."""
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port: a request there fails at once
    tree = tmp_path / "tree.yml"
    tree.write_text(with_storage(f"endpoint_url: '{dead}'"))
    (tmp_path / "images").symlink_to(EXAMPLE.parent / "images")
    target = ("-c", str(tree), "-t", f"s3://{bucket}")
    published = run(*target, "--endpoint-url", s3_server.endpoint, "publish", env=s3_server.credentials)
    assert published.returncode == 0, published.stderr

    for env_name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        out = run(*target, "list", env={**s3_server.credentials, env_name: s3_server.endpoint})
        assert out.returncode == 0, out.stderr
        warned = [line for line in out.stderr.splitlines() if "endpoint" in line]
        assert len(warned) == 1 and env_name in warned[0] and dead in warned[0], out.stderr
    out = run(*target, "list", env={**s3_server.credentials, "AWS_ENDPOINT_URL_S3": s3_server.endpoint,
                                    "AWS_ENDPOINT_URL": dead})
    assert out.returncode == 0, out.stderr
    out = run(*target, "--endpoint-url", s3_server.endpoint, "list",
              env={**s3_server.credentials, "AWS_ENDPOINT_URL_S3": dead})
    assert out.returncode == 0 and "endpoint" not in out.stderr, out.stderr
    live = tmp_path / "live.yml"  # tree.yml's endpoint, when nothing else names one
    live.write_text(with_storage(f"endpoint_url: '{s3_server.endpoint}'"))
    out = run("-c", str(live), "-t", f"s3://{bucket}", "list", env=s3_server.credentials)
    assert out.returncode == 0 and "endpoint" not in out.stderr, out.stderr
