"""Issue 9, points 7 (part), 15, 16 and 23: bad arguments give one clear line, the CLI's small
promises hold, and the AWS Lambda bundle is built from the checkout, not from a name on the index.

Every case runs the real CLI (`python -m ssb_s3`) in a subprocess, as a user does, and checks
what a user sees: the exit code, the one line on stderr (what was wrong, what was expected), and
that nothing was published. The bundle test clones this repository, runs
examples/aws/build-bundle.sh in the clone (it needs the package index, as CI has it) and imports
the Lambda handler in an interpreter whose path is the bundle and the standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from helpers import SSB, ssb
from realparts import S3Server, missing, need

from ssb_s3.cli import _lock_timeout
from ssb_s3.config import StorageConfig, load_config
from ssb_s3.core.versions import version_name_problem
from ssb_s3.errors import StoreError
from ssb_s3.schemas import load_schema
from ssb_s3.storage.backends import open_store
from ssb_s3.storage.lease import Lease
from ssb_s3.vocabulary.text import printable

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "local"
AMD64 = "sample:1.0:amd64:default"
PREFIX_RULE = load_schema("tree")["properties"]["prefix"]["description"]


def one_error_line(out: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The run failed with `code` and said so in exactly one line, without a traceback."""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr, out.stderr
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def s3_tree(path: Path, server: S3Server, prefix: str = "/") -> Path:
    """examples/local's products, their files in examples/local, the tree on the S3 server."""
    text = (EXAMPLE / "tree.yml").read_text().replace("source: images", f"source: {EXAMPLE / 'images'}")
    text = text.replace("prefix: /\n", f"prefix: {json.dumps(prefix)}\nstorage:\n  endpoint_url: {server.endpoint}\n"
                        "  region: us-east-1\n  addressing_style: path\n")
    path.write_text(text)
    return path


def bucket_keys(server: S3Server, bucket: str) -> list[str]:
    client = server.client()
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


# --------------------------------------------------------------------------------------------
# Point 7 (part): --endpoint-url, -t s3://BUCKET, verify --base-url


@pytest.mark.parametrize("url", ["notaurl", "ftp://host:9000", "http://host:99999", "http://", "http://h st"])
def test_endpoint_url_that_is_not_a_url_is_one_line(tmp_path: Path, url: str) -> None:
    for args in (("-c", str(EXAMPLE / "tree.yml"), "-t", "s3://images"), ("-t", "s3://images")):
        line = one_error_line(ssb(*args, "--endpoint-url", url, "verify" if len(args) == 2 else "validate",
                                  cwd=tmp_path))
        assert line == f"error: --endpoint-url '{url}': expected http(s)://HOST[:PORT]"


def test_endpoint_url_in_tree_yml_names_the_file_and_field(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text((EXAMPLE / "tree.yml").read_text().replace("prefix: /\n", "storage:\n  endpoint_url: http://\n"))
    out = ssb("-c", str(conf), "-t", "s3://images", "validate")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"  - {conf}: storage.endpoint_url: 'http://' is not valid, expected http(s)://HOST[:PORT]" in (
        out.stderr.splitlines()), out.stderr


def test_endpoint_url_from_the_environment_or_a_library_caller_is_one_line(tmp_path: Path) -> None:
    out = ssb("-c", str(EXAMPLE / "tree.yml"), "-t", "s3://images", "validate", env={"AWS_ENDPOINT_URL": "notaurl"})
    assert one_error_line(out) == ("error: cannot set up the S3 client: Invalid endpoint: notaurl: "
                                   "expected http(s)://HOST[:PORT]")
    with pytest.raises(StoreError, match=r"^S3 endpoint URL 'notaurl': expected http\(s\)://HOST\[:PORT\]$"):
        open_store("s3://images", StorageConfig(endpoint_url="notaurl"))


@pytest.mark.parametrize("name", ["Bad_Bucket!", "x" * 256, "bad bucket", "caf\u00e9"])
def test_invalid_bucket_name_is_one_line_with_the_rule(tmp_path: Path, name: str) -> None:
    line = one_error_line(ssb("-c", str(EXAMPLE / "tree.yml"), "-t", f"s3://{name}", "validate"))
    assert f"the bucket name '{name}' is not valid" in line
    assert "expected 1-255 ASCII letters, digits, dots, hyphens or underscores" in line
    assert "regex" not in line
    line = one_error_line(ssb("verify", "--base-url", f"s3://{name}", cwd=tmp_path))
    assert line.startswith(f"error: --base-url 's3://{name}': the bucket name"), line


@pytest.mark.parametrize("url", ["ftp://x", "file:///srv/images", "s4://bucket"])
def test_verify_base_url_says_what_it_accepts(tmp_path: Path, url: str) -> None:
    line = one_error_line(ssb("verify", "--base-url", url, cwd=tmp_path))
    assert line == (f"error: --base-url '{url}': unsupported URL; expected an http(s):// URL (read-only), "
                    "s3://BUCKET[/PREFIX] or a local folder")


# --------------------------------------------------------------------------------------------
# Point 15: version folder names with characters a version name cannot hold


@pytest.mark.parametrize(("name", "shown"), [
    ("20260105_0000 x", "' ' (space)"),
    ("20260106_%41", "'%'"),
    ("20260107_ü", "'ü' (U+00FC)"),
    ("20260108_00\t00", "'\\t' (tab)"),
])
def test_version_folder_with_bad_characters_names_them(tmp_path: Path, name: str, shown: str) -> None:
    images = tmp_path / "images"
    shutil.copytree(EXAMPLE / "images", images)
    shutil.copytree(images / "sample/amd64/20260102_00:00", images / "sample/amd64" / name)
    conf = tmp_path / "tree.yml"
    shutil.copy(EXAMPLE / "tree.yml", conf)
    out = ssb("-c", str(conf), "build-versions-manifest", "-p", AMD64, "--stdout")
    assert out.returncode == 0, out.stderr
    assert name not in json.loads(out.stdout)["versions"]
    expected = (f"WARNING: {AMD64}: version {printable(name)} left out: folder name contains {shown}, not allowed in a "
                "version name (allowed: ASCII letters, digits and _ : . + -)")
    assert expected in out.stderr.splitlines(), out.stderr
    assert "YYYYMMDD" not in out.stderr


def test_version_name_problem_reasons() -> None:
    assert version_name_problem("20260101_12:00") is None
    assert version_name_problem("20260101_1200+build.1-rc") is None
    assert "YYYYMMDD" in (version_name_problem("latest") or "")
    assert "not a real calendar date" in (version_name_problem("20261399_0000") or "")
    many = version_name_problem("20260101 %ü\u200b\x7f!é?")
    assert many == ("contains ' ' (space), '%', 'ü' (U+00FC), '\\u200b' (U+200B), '\\x7f' (U+007F), 3 more, "
                    "not allowed in a version name (allowed: ASCII letters, digits and _ : . + -)")
    assert len(version_name_problem("20260101_" + "".join(map(chr, range(0x100, 0x2100)))) or "") < 250


def test_build_product_version_with_a_space_names_it(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    shutil.copy(EXAMPLE / "tree.yml", conf)
    shutil.copytree(EXAMPLE / "images", tmp_path / "images")
    line = one_error_line(ssb("-c", str(conf), "build-product", AMD64, "--version", "20260105_0000 x",
                              "--from-dir", str(EXAMPLE / "images/sample/amd64/20260102_00:00"), "--no-publish"))
    assert "version name '20260105_0000 x' contains ' ' (space), not allowed in a version name" in line
    assert not (tmp_path / "images/sample/amd64/20260105_0000 x").exists()


# --------------------------------------------------------------------------------------------
# Point 16: --lock-timeout, print's source, prefix with a space, SIGINT, validate's wording


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "abc", ""])
@pytest.mark.parametrize("command", ["publish", "purge"])
def test_lock_timeout_must_be_a_finite_non_negative_number(tmp_path: Path, value: str, command: str) -> None:
    public = tmp_path / "public"
    out = ssb("-c", str(EXAMPLE / "tree.yml"), "-t", str(public), command, f"--lock-timeout={value}")
    line = one_error_line(out)
    assert line == (f"error: --lock-timeout '{value}': expected a duration (e.g. 10m, 1h30m, 600) or a non-negative "
                    "number of seconds")
    assert not public.exists()


def test_lock_timeout_zero_fractions_and_durations_are_fine(tmp_path: Path) -> None:
    """--lock-timeout takes durations as --grace does (issue 23 §3), and seconds as before."""
    assert [_lock_timeout(None, None, v) for v in ("0", "0.5", "600", "90s", "10m", "1h30m")] == [  # type: ignore[arg-type]
        0, 0.5, 600, 90, 600, 5400]
    for value in ("0", "0.5", "90s"):
        out = ssb("-c", str(EXAMPLE / "tree.yml"), "-t", str(tmp_path / "public"), "publish", "--lock-timeout", value)
        assert out.returncode == 0, out.stderr


def test_print_output_saved_elsewhere_names_the_same_source(tmp_path: Path) -> None:
    """tree.yml in a/ with `source: images` (relative to a/), printed from tmp_path and saved in b/."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(EXAMPLE / "tree.yml", tmp_path / "a/tree.yml")
    shutil.copytree(EXAMPLE / "images", tmp_path / "a/images")
    out = ssb("-c", "a/tree.yml", "print", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    saved = tmp_path / "b/tree.yml"
    saved.write_text(out.stdout)
    original, copy = load_config(tmp_path / "a/tree.yml"), load_config(saved)
    assert [p.source for p in copy.products] == [str(tmp_path / "a/images")] * 2
    assert [Path(p.source).resolve() for p in copy.products] == [Path(p.source).resolve() for p in original.products]
    again = ssb("-c", str(saved), "print", cwd=tmp_path / "b")  # stable, from anywhere
    assert again.returncode == 0 and again.stdout == out.stdout, again.stderr
    published = ssb("-c", str(saved), "-t", str(tmp_path / "public"), "publish", cwd=tmp_path / "b")
    assert published.returncode == 0, published.stderr
    assert "published: 2 products, 3 versions" in published.stdout


def test_target_prefix_follows_the_tree_yml_prefix_rule(s3_env: S3Server, bucket: str, tmp_path: Path) -> None:
    conf = s3_tree(tmp_path / "tree.yml", s3_env)
    for prefix in ("pre with space", "a/../b", "./x", "a\\b"):
        out = ssb("-c", str(conf), "-t", f"s3://{bucket}/{prefix}", "publish")
        line = one_error_line(out)
        assert line == f"error: 's3://{bucket}/{prefix}': the prefix '{prefix}' is not valid: expected {PREFIX_RULE}"
    assert bucket_keys(s3_env, bucket) == []
    # the same rule, worded the same, for tree.yml's own `prefix`
    bad = s3_tree(tmp_path / "bad.yml", s3_env, prefix="pre with space")
    out = ssb("-c", str(bad), "-t", f"s3://{bucket}", "validate")
    assert out.returncode == 1 and f'prefix: "pre with space" is not valid, expected {PREFIX_RULE}' in out.stderr
    good = ssb("-c", str(conf), "-t", f"s3://{bucket}/images/v1", "publish")
    assert good.returncode == 0, good.stderr
    assert "images/v1/streams/v1/index.json" in bucket_keys(s3_env, bucket)


def test_sigint_exits_130_with_one_line(tmp_path: Path) -> None:
    """verify against a server that accepts the request and never answers; Ctrl-C while it waits."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(60)
        proc = subprocess.Popen([*SSB, "verify", "--base-url",
                                 f"http://127.0.0.1:{server.getsockname()[1]}"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(60)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096) or b"\r\n\r\n"
                assert request.startswith(b"GET /streams/v1/index.json"), request
                proc.send_signal(signal.SIGINT)
                stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert one_error_line(out, code=130) == "error: interrupted"


def test_validate_lists_problems_without_claiming_it_wrote_nothing(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    shutil.copy(EXAMPLE / "tree.yml", conf)
    shutil.copytree(EXAMPLE / "images", tmp_path / "images")
    (tmp_path / "images/sample/amd64/20260102_00:00/rootfs.tar.xz").unlink()
    out = ssb("-c", str(conf), "-t", str(tmp_path / "public"), "validate")
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[0] == "error: not valid, publish would refuse this tree: 1 problem(s)", out.stderr
    assert len(lines) == 2 and lines[1].startswith("  - ") and "rootfs.tar.xz" in lines[1], out.stderr
    assert "nothing was written" not in out.stderr and "refused," not in out.stderr
    index = ssb("-c", str(conf), "-t", str(tmp_path / "public"), "build-index")  # writes: keeps its wording
    assert index.returncode == 1 and "error: refused, nothing was written: 1 problem(s)" in index.stderr
    assert not (tmp_path / "public").exists()


# --------------------------------------------------------------------------------------------
# Point 23: the Lambda bundle comes from the checkout, with pinned dependencies


def _index_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pyyaml/", timeout=15) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def test_aws_docs_never_install_the_name_from_the_index() -> None:
    for path in ("examples/aws/README.md", "examples/aws/template.yaml"):
        text = (REPO / path).read_text()
        assert "build-bundle.sh" in text, path
        assert "pip install ssb-s3 -t" not in text and "pip install ssb_s3" not in text, path
    pins = [line for line in (REPO / "examples/aws/requirements-lambda.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins and all("==" in line for line in pins), pins
    names = {line.split("==")[0].lower() for line in pins}
    assert {"pyyaml", "click", "jsonschema", "boto3", "botocore", "rpds-py", "referencing"} <= names
    assert not {"ssb-s3", "ssb_s3"} & names


def test_lambda_bundle_from_a_clean_clone_imports_the_handler(tmp_path: Path) -> None:
    git = need("git")
    if not _index_reachable():
        missing("the package index (https://pypi.org) is not reachable: the bundle's pinned wheels come from it")
    clone = tmp_path / "clone"
    subprocess.run([git, "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    bundle = tmp_path / "bundle"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"  # the interpreter that imports it below
    built = subprocess.run(["bash", str(clone / "examples/aws/build-bundle.sh"), str(bundle)], cwd=tmp_path,
                           env={**os.environ, "PYTHON": sys.executable, "LAMBDA_PYTHON": version},
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert (bundle / "ssb_s3/hooks/aws_lambda.py").read_bytes() == (clone / "ssb_s3/hooks/aws_lambda.py").read_bytes()
    assert (bundle / "ssb_s3/schemas/tree.schema.json").is_file()
    pins = {line.split("==")[0].lower().replace("_", "-") for line in
            (clone / "examples/aws/requirements-lambda.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    installed = {d.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("_", "-")
                 for d in bundle.glob("*.dist-info")}
    assert installed == pins | {"ssb-s3"}  # the pinned closure and ssb_s3, nothing else
    assert not (clone / "build").exists() and not list(clone.glob("*.egg-info"))  # the clone stays clean
    probe = f"""
import json, sys
bundle = {str(bundle)!r}
sys.path.insert(0, bundle)
import ssb_s3.hooks.aws_lambda as entry
from ssb_s3.config import StorageConfig
from ssb_s3.storage.backends.s3 import make_s3_client
make_s3_client(StorageConfig(region="us-east-1"))
outside = sorted({{m.__name__.partition(".")[0] for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) and not m.__file__.startswith(bundle)
                  and ("site-packages" in m.__file__ or "dist-packages" in m.__file__)}})
print(json.dumps({{"callable": callable(entry.handler), "file": entry.__file__, "path": sys.path,
                  "outside": outside}}))
"""
    out = subprocess.run([sys.executable, "-I", "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={"PATH": os.environ.get("PATH", "")})
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["callable"] is True
    assert found["file"] == str(bundle / "ssb_s3/hooks/aws_lambda.py")
    assert found["outside"] == []
    assert not any("site-packages" in p or "dist-packages" in p for p in found["path"]), found["path"]
    # a second run replaces its own bundle; any other folder is left alone
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/keep.txt").write_text("x")
    refused = subprocess.run(["bash", str(clone / "examples/aws/build-bundle.sh"), str(tmp_path / "mine")],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "is not a bundle built by this script" in refused.stderr
    assert (tmp_path / "mine/keep.txt").read_text() == "x"


def test_a_publish_stopped_by_ctrl_c_says_rerun_and_the_rerun_finishes(tmp_path: Path) -> None:
    """Ctrl-C while publish waits for the lease: one line saying how to resume, exit 130, nothing
    served; the same command run again publishes."""
    public = tmp_path / "public"
    argv = [*SSB, "-c", str(EXAMPLE / "tree.yml"), "-t", str(public), "publish"]
    with Lease(open_store(str(public)), ttl=60, timeout=0, purpose="test holder"):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            assert "is held" in proc.stderr.readline()  # waiting: the wait is reported after 2 s
            proc.send_signal(signal.SIGINT)
            _, rest = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130 and rest.splitlines() == ["error: interrupted; re-run the same command to resume"]
    assert not (public / "streams").exists()
    again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert (public / "streams/v1/index.json").is_file()


def test_defaults_picked_up_unasked_are_said(tmp_path: Path) -> None:
    """publish says where it publishes when -t defaults to '.'; list, mirror, purge and compat say
    they use ./tree.yml when they pick it up unasked (issue 23 §3); given explicitly, nothing is said."""
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE, work)
    env = {k: v for k, v in os.environ.items() if k not in ("SSB_CONFIG", "SSB_TARGET")}
    published = ssb("publish", cwd=work, env=env)
    assert published.returncode == 0, published.stderr
    assert published.stderr.splitlines()[0] == \
        "publishing to local folder . (-t DIR or -t s3://BUCKET to choose the target)"
    assert (work / "streams/v1/index.json").is_file()
    for command in (["list"], ["purge", "--dry-run"], ["compat"]):
        out = ssb(*command, cwd=work, env=env)
        assert out.returncode == 0, out.stderr
        assert out.stderr.splitlines()[:1] == ["using ./tree.yml (-c FILE to choose another)"], (command, out.stderr)
        explicit = ssb("-c", "tree.yml", "-t", ".", *command, cwd=work, env=env)
        assert explicit.returncode == 0 and "using ./tree.yml" not in explicit.stderr, explicit.stderr
    again = ssb("-t", ".", "publish", cwd=work, env=env)
    assert again.returncode == 0 and "publishing to local folder" not in again.stderr


def test_a_reader_that_goes_away_is_no_error(tmp_path: Path) -> None:
    """`ssb-s3 list | head`: the reader leaves, the writer stops quietly (141, as shells report a
    SIGPIPE), never an 'unexpected BrokenPipeError' line."""
    public = tmp_path / "public"
    assert ssb("-c", str(EXAMPLE / "tree.yml"), "-t", str(public), "publish").returncode == 0
    proc = subprocess.Popen([*SSB, "-c", str(EXAMPLE / "tree.yml"), "-t", str(public),
                             "list", "-c", "lLfFpdasutNvor"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141 and err == b"", err


def test_force_unlock_needs_no_tree_yml(tmp_path: Path) -> None:
    """A tree made by `add` or `mirror` alone has no tree.yml, and its lease can be removed too."""
    tree = tmp_path / "tree"
    with Lease(open_store(str(tree)), ttl=600, timeout=0, purpose="a publisher that died"):
        assert (tree / ".ssb-s3/lease.json").is_file()
        out = ssb("-t", str(tree), "force-unlock", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("removed the lease held for a publisher that died")
        assert not (tree / ".ssb-s3/lease.json").exists()
