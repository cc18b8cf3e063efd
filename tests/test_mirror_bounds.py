"""Per-file bounds of a mirror (issue 20, point 9), against a hostile loopback upstream: a file that
declares more than max_file_size is never requested (dropped at selection, with its reason); a file
that trickles under the stall rule fails, and only its version is left out."""

from __future__ import annotations

import http.server
import json
import time
from pathlib import Path
from typing import Any, ClassVar

from realparts import TlsFiles
from test_mirror import PRODUCTS, own_product, run_cli, save, serve_tls, write_upstream

TRICKLED = "images/busybox/1.35/"  # PRODUCTS[2]'s folder: its files trickle


class _Upstream(http.server.SimpleHTTPRequestHandler):
    """Static files; every file under TRICKLED comes one byte every 0.2 s; each path asked is recorded."""

    asked: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).asked.append(self.path)
        super().do_GET()

    def copyfile(self, source: Any, outputfile: Any) -> None:
        if TRICKLED not in self.path:
            super().copyfile(source, outputfile)
            return
        end = time.monotonic() + 30  # the client hangs up long before
        while (byte := source.read(1)) and time.monotonic() < end:
            outputfile.write(byte)
            outputfile.flush()
            time.sleep(0.2)


def _tree(tmp_path: Path, source: str, settings: str) -> Path:
    """tree.yml: one product of our own (own:1.0:amd64:default) and one mirror with `settings`."""
    conf = tmp_path / "tree.yml"
    conf.write_text(f"products:\n{own_product(tmp_path)}\nmirrors:\n  - source: {source}\n{settings}")
    return conf


def test_a_file_over_max_file_size_is_never_requested(tls_files: TlsFiles, tmp_path: Path) -> None:
    root = tmp_path / "up"
    catalog = write_upstream(root, [PRODUCTS[0]])
    version = catalog["products"][PRODUCTS[0][0]]["versions"]["20260102_0000"]
    version["items"]["root.squashfs"]["size"] = 1 << 40  # 1 TiB declared (the server would stream zeros)
    save(root, catalog, None)
    _Upstream.asked = []
    with serve_tls(lambda *a, **k: _Upstream(*a, directory=str(root), **k), tls_files) as url:
        # the default cap (64 GiB), mirror on the command line
        out = run_cli(None, str(tmp_path / "a"), "mirror", url, "--json", ca=tls_files.ca_cert, timeout=120)
        assert out.returncode == 0, out.stderr
        dropped = {(d["version"], d["item"]): d["reason"] for d in json.loads(out.stdout)["dropped"]}
        assert dropped[("20260102_0000", "root.squashfs")] == (
            "declares 1099511627776 bytes, over the max_file_size of 68719476736 bytes (tree.yml mirrors: "
            "max_file_size)")
        assert not any(p.endswith("20260102_0000/rootfs.squashfs") for p in _Upstream.asked), _Upstream.asked
        assert not (tmp_path / "a/images/busybox/1.36/amd64/default/20260102_0000/rootfs.squashfs").exists()
        # tree.yml's setting: every file of this upstream is over 100 bytes
        conf = _tree(tmp_path, url, "    max_file_size: 100\n")
        _Upstream.asked = []
        out = run_cli(None, str(tmp_path / "b"), "-c", str(conf), "publish", "--refresh-manifests",
                      ca=tls_files.ca_cert, timeout=120)
        assert "over the max_file_size of 100 bytes" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and "unexpected" not in out.stderr
        assert not [p for p in _Upstream.asked if "/images/" in p], _Upstream.asked
        assert not (tmp_path / "b/images").exists()
        served = json.loads((tmp_path / "b/streams/v1/images.json").read_text())
        assert set(served["products"]) == {"own:1.0:amd64:default"}


def test_a_trickled_file_fails_its_version_only(tls_files: TlsFiles, tmp_path: Path) -> None:
    root = tmp_path / "up"
    write_upstream(root, [PRODUCTS[1], PRODUCTS[2]])
    _Upstream.asked = []
    with serve_tls(lambda *a, **k: _Upstream(*a, directory=str(root), **k), tls_files) as url:
        conf = _tree(tmp_path, url, "    stall_bytes: 1000\n    stall_seconds: 1\n")
        began = time.monotonic()
        out = run_cli(None, str(tmp_path / "t"), "-c", str(conf), "publish", "--refresh-manifests",
                      ca=tls_files.ca_cert, timeout=120)
        took = time.monotonic() - began
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr, out.stderr
    assert out.returncode == 1, out.stderr  # some products were not updated
    stalled = [line for line in out.stderr.splitlines() if "stalled:" in line]
    assert stalled and all(TRICKLED in line and "under the 1000 bytes of the stall rule" in line
                           for line in stalled), out.stderr
    assert f"product {PRODUCTS[2][0]} version 20260101_0000: not mirrored" in out.stderr, out.stderr
    served = json.loads((tmp_path / "t/streams/v1/images.json").read_text())
    assert set(served["products"]) == {"own:1.0:amd64:default", PRODUCTS[1][0]}
    assert took < 30, took  # the stall rule, not the 6-hour deadline, ended the trickle
