"""Issue 9, points 5, 18 and 22: what comes from outside (tree.yml, metadata.yaml inside image
tarballs, ssb.json) is read with bounds on size, time and memory, and what is reported is
bounded too.

Attacks are run through the real CLI in a subprocess whose time and peak RSS are measured
(`measured`); build-product and publish --refresh-manifests run the same artifact checks, on a
local folder and on the real S3 server (SeaweedFS).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import lzma
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import s3_storage, tree_product, write_tree_yml
from measure import Run, measured
from realparts import S3Server, make_image

from ssb_s3.config import ConfigError, config_from_text, load_yaml
from ssb_s3.errors import MAX_LISTED, ProblemsFound

HERE = Path(__file__).resolve().parent
PRODUCT = "busybox:1.36:amd64:default"
PRODUCT_DIR = "busybox/amd64/default"
VERSION = "20260101_0000"
TREE_PRODUCT = tree_product(PRODUCT, aliases=["busybox/1.36"])


def one_error_line(run: Run) -> str:
    """The run failed with exit 1 and exactly one 'error: ...' line, no traceback."""
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr[-2000:]
    return errors[0]


# ---------------------------------------------------------------------------------------------
# Crafted inputs


def laughs(levels: int = 9, top: str = "products") -> str:
    """The billion-laughs document: 9 levels of 9 aliases, 9**9 'lol' once expanded."""
    lines = ["a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    names = "abcdefghi"[:levels]
    for prev, cur in itertools.pairwise(names):
        lines.append(f"{cur}: &{cur} [{','.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + f"\n{top}: *{names[-1]}\n"


def tar_bytes(members: list[tuple[str, bytes | None]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    """An uncompressed tar of (name, content) pairs; None makes a directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1767225600
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def metadata(arch: str = "x86_64", created: str = "1767225600", extra: str = "") -> bytes:
    return (f"architecture: {arch}\ncreation_date: {created}\n"
            f"properties: {{os: Busybox, release: '1.36'}}\n{extra}").encode()


def built(dest: Path, lxd_tar_xz: bytes | None = None) -> Path:
    """distrobuilder output (squashfs split image) with `lxd.tar.xz` replaced if given."""
    make_image(dest, kind="squashfs", serial=VERSION)
    if lxd_tar_xz is not None:
        (dest / "lxd.tar.xz").write_bytes(lxd_tar_xz)
    return dest


def sparse_tar_gz(declared: int = 2 << 30) -> bytes:
    """A GNU sparse member 'metadata.yaml' that declares `declared` bytes and stores none."""
    header = bytearray(512)
    header[0:13] = b"metadata.yaml"
    header[100:108] = b"0000644\0"
    header[108:116] = header[116:124] = b"0000000\0"
    header[124:136] = b"%011o\0" % 0
    header[136:148] = b"%011o\0" % 1767225600
    header[156:157] = b"S"
    header[257:265] = b"ustar  \0"
    header[386:398] = b"%011o\0" % (declared - 1)  # one sparse chunk: 0 bytes at the end
    header[398:410] = b"%011o\0" % 0
    header[483:495] = b"%011o\0" % declared  # realsize
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    return gzip.compress(bytes(header) + bytes(1024), mtime=0)


def pax_redos_tar_gz(size: int = 60_000) -> bytes:
    """CVE-2024-6232: a pax header that makes tarfile's regular expressions backtrack (minutes of
    CPU on Python 3.11.7 from a few hundred bytes of gzip)."""
    data = b"2 " * (size // 2) + b"="
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, len(data)
    raw = info.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)
    raw += tar_bytes([("metadata.yaml", metadata())], tarfile.USTAR_FORMAT)
    return gzip.compress(raw, mtime=0)


def xz(data: bytes) -> bytes:
    return lzma.compress(data, preset=1)


# ---------------------------------------------------------------------------------------------
# Point 5: every YAML load is bounded


def test_billion_laughs_tree_yml_fails_in_one_line_fast_and_flat(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text(laughs())
    assert len(conf.read_bytes()) < 400
    run = measured("-c", str(conf), "validate")
    line = one_error_line(run)
    assert str(conf) in line and "aliases are expanded" in line, line
    assert run.cpu < 10 and run.peak_mb < 150, (run.cpu, run.peak_mb)


def test_yaml_loader_bounds_and_keeps_plain_behaviour() -> None:
    assert load_yaml("eol: 2027-06-30\n", max_bytes=100, max_nodes=100) == {"eol": "2027-06-30"}
    with pytest.raises(yaml.YAMLError, match="duplicate key 'a'"):
        load_yaml("a: 1\na: 2\n", max_bytes=100, max_nodes=100)
    with pytest.raises(yaml.YAMLError, match="over the limit of 10 bytes"):
        load_yaml("a: 12345678\n", max_bytes=10, max_nodes=100)
    many = "a: &a x\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    with pytest.raises(yaml.YAMLError, match="more than 100 aliases"):
        load_yaml(many, max_bytes=10_000, max_nodes=10_000)
    assert len(load_yaml(many.replace("101", "1").replace(", *a" * 100, ""), max_bytes=10_000,
                         max_nodes=10_000)["b"]) == 1
    with pytest.raises(yaml.YAMLError, match="contains it"):
        load_yaml("a: &a [1, *a]\n", max_bytes=100, max_nodes=100)


def test_tree_yml_size_is_capped_for_files_and_s3_text(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    conf.write_text("# padding\n" * 110_000 + "products: []\n")  # 1.1 MB
    run = measured("-c", str(conf), "validate")
    line = one_error_line(run)
    assert str(conf) in line and "over the limit of 1048576 bytes" in line
    with pytest.raises(ConfigError, match=r"s3://b/tree.yml: .*over the limit"):
        config_from_text(b"#" * (2 << 20), "s3://b/tree.yml")


# ---------------------------------------------------------------------------------------------
# Point 18: sizes inside artifacts (build-product --from-dir on a local folder)


def build_from_dir(tmp_path: Path, lxd_tar_xz: bytes) -> tuple[Run, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, TREE_PRODUCT, grace=0)
    target = tmp_path / "tree"
    target.mkdir(exist_ok=True)
    out = built(tmp_path / "built", lxd_tar_xz)
    return measured("-c", str(conf), "-t", str(target), "build-product", PRODUCT, "--from-dir", str(out),
                    "--no-publish"), target


@pytest.mark.parametrize(("case", "tarball", "expected"), [
    ("metadata.yaml over 1 MiB", lambda: xz(tar_bytes([("metadata.yaml", metadata(extra="#" * (2 << 20)))])),
     "metadata.yaml is 2097"),
    ("sparse member declaring 2 GB", sparse_tar_gz, "sparse members are not supported"),
    ("1,001 members before metadata.yaml",
     lambda: xz(tar_bytes([(f"templates/{i}", b"") for i in range(1001)] + [("metadata.yaml", metadata())])),
     "metadata.yaml not found within the first 1000 members"),
    ("pax header ReDoS (CVE-2024-6232)", pax_redos_tar_gz, "refused tarball: a pax header record is malformed"),
    ("pax header digits ReDoS", lambda: gzip.compress(_pax_with_value(b"1" * 60_000), mtime=0),
     "more than 32 digits in a row"),  # ~10 s of CPU in Python 3.11.7's tarfile
    ("pax header of 1 MB", lambda: gzip.compress(_pax_with_value(b"1" * 1_000_000), mtime=0),
     "an extended header of 1000"),  # minutes of CPU in Python 3.11.7's tarfile, from 1.3 KB of gzip
    ("alias bomb in architecture", lambda: xz(tar_bytes([("metadata.yaml", laughs(top="architecture").encode())])),
     "aliases are expanded"),
    ("alias bomb in creation_date",
     lambda: xz(tar_bytes([("metadata.yaml", (laughs(top="creation_date") + "architecture: x86_64\n").encode())])),
     "aliases are expanded"),
    ("shallow alias bomb", lambda: xz(tar_bytes([("metadata.yaml", laughs(5, "architecture").encode())])),
     "aliases are expanded"),
    ("huge architecture value", lambda: xz(tar_bytes([("metadata.yaml", metadata(arch="A" * 60_000))])),
     "architecture 'AAAA"),
    ("metadata.yaml over 64 KiB", lambda: xz(tar_bytes([("metadata.yaml", metadata(extra="#" * 70_000))])),
     "metadata.yaml: invalid YAML: the document is 70"),
])
def test_bad_metadata_tarballs_are_refused_fast_flat_and_in_one_short_line(
        tmp_path: Path, case: str, tarball: Any, expected: str) -> None:
    run, target = build_from_dir(tmp_path, tarball())
    line = one_error_line(run)
    assert expected in line and "lxd.tar.xz" in line, line
    assert len(line) < 600, len(line)
    assert run.cpu < 10 and run.peak_mb < 150, (case, run.cpu, run.peak_mb)
    assert not list(target.rglob("*.squashfs"))  # nothing uploaded


def _pax_with_value(value: bytes) -> bytes:
    """A tar whose pax header holds a comment of `value` (well-formed records), then metadata.yaml."""
    record = b" comment=" + value + b"\n"
    n = len(record) + 1
    while n != len(record) + len(str(n)):
        n = len(record) + len(str(n))
    data = str(n).encode() + record
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, len(data)
    return (info.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)
            + tar_bytes([("metadata.yaml", metadata())], tarfile.USTAR_FORMAT))


def test_good_pax_and_gnu_tarballs_still_pass(tmp_path: Path) -> None:
    long_name = "templates/" + "n" * 200 + ".tpl"
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        members = [("metadata.yaml", metadata()), ("templates", None), (long_name, b"{{ x }}\n")]
        run, _ = build_from_dir(tmp_path / str(fmt), xz(tar_bytes(members, fmt)))
        assert run.returncode == 0, run.stderr


# ---------------------------------------------------------------------------------------------
# Point 18: build-product and publish --refresh-manifests run the same checks (local and S3)

BAD_TARBALLS = {
    "wrong arch": (lambda: xz(tar_bytes([("metadata.yaml", metadata(arch="aarch64"))])),
                   "metadata.yaml: architecture 'aarch64' does not match product busybox:1.36:amd64:default"),
    "alias bomb": (lambda: xz(tar_bytes([("metadata.yaml", laughs(top="architecture").encode())])),
                   "aliases are expanded"),
    "pax ReDoS": (pax_redos_tar_gz, "refused tarball: a pax header record is malformed"),
}


def reason(line: str, file_location: str) -> str:
    """What follows the file's location in an error line."""
    assert file_location in line, (file_location, line)
    return line.split(file_location, 1)[1].split(" (", 1)[0].split("; not published")[0]


@pytest.mark.parametrize("bad", sorted(BAD_TARBALLS))
def test_build_and_refresh_refuse_the_same_tarball_local(tmp_path: Path, bad: str) -> None:
    tarball, expected = BAD_TARBALLS[bad]
    data = tarball()
    build, target = build_from_dir(tmp_path, data)
    build_line = one_error_line(build)
    assert expected in build_line
    # The same files put straight into the tree, then a refresh.
    version_dir = target / PRODUCT_DIR / VERSION
    version_dir.mkdir(parents=True)
    for path in (tmp_path / "built").iterdir():
        shutil.copy(path, version_dir / path.name)
    refresh = measured("-c", str(tmp_path / "tree.yml"), "-t", str(target), "publish", "--refresh-manifests")
    assert refresh.returncode == 1 and "Traceback" not in refresh.stderr
    lines = [ln for ln in refresh.stderr.splitlines() if str(version_dir / "lxd.tar.xz") in ln]
    assert len(lines) == 1, refresh.stderr
    assert reason(lines[0], str(version_dir / "lxd.tar.xz")) == reason(
        build_line, str(tmp_path / "built" / "lxd.tar.xz"))
    assert refresh.cpu < 5
    assert not (target / "streams").exists() and not (target / PRODUCT_DIR / "ssb.json").exists()


@pytest.mark.parametrize("bad", sorted(BAD_TARBALLS))
def test_build_and_refresh_refuse_the_same_tarball_s3(s3_server: S3Server, bucket: str, tmp_path: Path,
                                                      bad: str) -> None:
    tarball, expected = BAD_TARBALLS[bad]
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, TREE_PRODUCT, storage=s3_storage(s3_server, checksum_mode="when_required"), grace=0)
    env = s3_server.credentials
    out = built(tmp_path / "built", tarball())
    build = measured("-c", str(conf), "-t", f"s3://{bucket}", "build-product", PRODUCT, "--from-dir", str(out),
                     env=env)
    build_line = one_error_line(build)
    assert expected in build_line
    client = s3_server.client()
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    for path in out.iterdir():
        client.put_object(Bucket=bucket, Key=f"{PRODUCT_DIR}/{VERSION}/{path.name}", Body=path.read_bytes())
    before = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    refresh = measured("-c", str(conf), "-t", f"s3://{bucket}", "publish", "--refresh-manifests", env=env)
    stored = f"s3://{bucket}/{PRODUCT_DIR}/{VERSION}/lxd.tar.xz"
    lines = [ln for ln in refresh.stderr.splitlines() if stored in ln]
    assert refresh.returncode == 1 and "Traceback" not in refresh.stderr and len(lines) == 1, refresh.stderr
    assert reason(lines[0], stored) == reason(build_line, str(out / "lxd.tar.xz"))
    after = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]
                   if not o["Key"].startswith(".ssb-s3/"))
    assert after == before  # no ssb.json, no catalog, no index


def test_refresh_accepts_what_build_product_accepts(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, TREE_PRODUCT, grace=0)
    target = tmp_path / "tree"
    for kind, version in (("squashfs", "20260101_0000"), ("unified", "20260102_0000")):
        make_image(target / PRODUCT_DIR / version, kind=kind, serial=version)
    run = measured("-c", str(conf), "-t", str(target), "publish", "--refresh-manifests")
    assert run.returncode == 0, run.stderr
    served = json.loads((target / PRODUCT_DIR / "ssb.json").read_text())
    assert sorted(served["versions"]) == ["20260101_0000", "20260102_0000"]


# ---------------------------------------------------------------------------------------------
# Point 22: size of ssb.json and of what is reported


def bad_hash_manifest(versions: int) -> bytes:
    items = {"lxd.tar.xz": {"ftype": "lxd.tar.xz", "path": "x/lxd.tar.xz", "size": 1, "sha256": "bad"}}
    return json.dumps({"name": PRODUCT, "versions": {f"2026010{1 + i % 9}_{i:06d}": {"items": items}
                                                     for i in range(versions)}}).encode()


def test_many_bad_versions_give_a_bounded_report(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, TREE_PRODUCT, grace=0)
    target = tmp_path / "tree"
    (target / PRODUCT_DIR).mkdir(parents=True)
    (target / PRODUCT_DIR / "ssb.json").write_bytes(bad_hash_manifest(20_000))
    run = measured("-c", str(conf), "-t", str(target), "publish")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert len(run.stderr) < 20_000, len(run.stderr)
    assert "… and 19980 more versions with problems" in run.stderr and "sha256" in run.stderr
    assert run.cpu < 30 and run.peak_mb < 300, (run.cpu, run.peak_mb)


def test_ssb_json_over_the_cap_is_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "tree.yml"
    write_tree_yml(conf, TREE_PRODUCT, grace=0)
    target = tmp_path / "tree"
    (target / PRODUCT_DIR).mkdir(parents=True)
    manifest = target / PRODUCT_DIR / "ssb.json"
    with manifest.open("wb") as fh:  # 65 MiB of JSON whitespace: never read past the cap
        fh.write(b"{" + b" " * (65 << 20) + b"}")
    run = measured("-c", str(conf), "-t", str(target), "publish")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"{manifest}: {manifest.stat().st_size} bytes, over the limit of 67108864 bytes" in run.stderr
    assert run.peak_mb < 150


def test_problems_listed_are_capped_in_text_and_json(tmp_path: Path) -> None:
    exc = ProblemsFound("publish refused", [f"problem {i}" for i in range(250)])
    lines = exc.lines()
    assert lines[0] == "publish refused: 250 problem(s)"
    assert len(lines) == 1 + MAX_LISTED + 1 and lines[-1] == "  - … and 150 more"
    # --json of a --keep-going publish with many failing products
    products = "".join(f"""
  - name: p{i}:1:amd64:default
    arch: amd64
    release: "1"
    os: P
    directory: p/{i}
""" for i in range(120))
    conf = tmp_path / "tree.yml"
    conf.write_text("products:" + products)
    target = tmp_path / "tree"
    for i in range(120):
        (target / "p" / str(i)).mkdir(parents=True)
        (target / "p" / str(i) / "ssb.json").write_text("{")
    run = measured("-c", str(conf), "-t", str(target), "publish", "--keep-going", "--json")
    report = json.loads(run.stdout)
    assert report["problems_count"] == 120
    assert len(report["problems"]) == MAX_LISTED + 1 and report["problems"][-1] == "… and 20 more"
    assert run.stderr.count("\n  - ") == MAX_LISTED + 1 and "… and 20 more" in run.stderr
