"""Bench: `ssb-s3 mirror` (one pass: HTTPS source -> verified stream -> SeaweedFS) against
python-simplestreams' `sstream-mirror` to a local folder plus a boto3 upload of that folder (two
passes), on the same upstream served over loopback HTTPS, in the same run.

    python bench/mirror_bench.py [--mib 2048] [--versions 4]

Prints wall time, throughput and peak RSS of each side and the ratio. Needs weed, openssl,
sstream-mirror (the same real parts as the tests: tests/realparts.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from realparts import make_test_ca, run_seaweedfs, serve_https_static  # noqa: E402
from test_mirror import add_version, save  # noqa: E402

WRAP = ("import resource,subprocess,sys;r=subprocess.run(sys.argv[1:]);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,file=sys.stderr);sys.exit(r.returncode)")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one command, measured by a fresh parent of its own."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", WRAP, *cmd], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    took = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed: {done.stderr[-2000:]}")
    return took, int(done.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=2048, help="upstream size in MiB")
    parser.add_argument("--versions", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ssb-mirror-bench-") as tmp:
        work = Path(tmp)
        tls = make_test_ca(work / "tls")
        up = work / "up"
        catalog = {"content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
                   "updated": "Thu, 01 Jan 2026 00:00:00 +0000", "products": {}}
        name = "busybox:1.36:amd64:default"
        product = catalog["products"][name] = {"aliases": "busybox/1.36", "arch": "amd64", "os": "Busybox",
                                               "release": "1.36", "variant": "default", "versions": {}}
        per_version = (args.mib << 20) // args.versions
        for n in range(args.versions):
            add_version(up, product, name, "amd64", "1.36", "default", f"2026010{n + 1}_0000", big=per_version)
        save(up, catalog, None)
        total = sum(p.stat().st_size for p in up.rglob("*") if p.is_file() and "streams" not in p.parts)
        with run_seaweedfs(work / "weed", tls) as s3, serve_https_static(up, tls) as url:
            s3.create_bucket("one-pass")
            s3.create_bucket("two-pass")
            env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": s3.access_key,
                   "AWS_SECRET_ACCESS_KEY": s3.secret_key, "AWS_ENDPOINT_URL": s3.endpoint,
                   "AWS_DEFAULT_REGION": "us-east-1", "SSL_CERT_FILE": str(tls.ca_cert),
                   "REQUESTS_CA_BUNDLE": str(tls.ca_cert), "SSB_PROGRESS_INTERVAL": "3600"}
            ours, ours_rss = timed([sys.executable, "-m", "ssb_s3", "-q", "-t", "s3://one-pass", "mirror", url,
                                    "--no-verify"], env)
            local = work / "local"
            fetch, fetch_rss = timed(["sstream-mirror", "--no-verify", f"{url}/streams/v1/index.json", str(local)],
                                     env)
            upload_script = (
                "import boto3,os,sys;from boto3.s3.transfer import TransferConfig;c=boto3.client('s3');"
                "root=sys.argv[1];cfg=TransferConfig(max_concurrency=10)\n"
                "for d,_,fs in os.walk(root):\n"
                " for f in fs:\n"
                "  p=os.path.join(d,f);c.upload_file(p,'two-pass',os.path.relpath(p,root),Config=cfg)")
            upload, upload_rss = timed([sys.executable, "-c", upload_script, str(local)], env)
        mib = total / (1 << 20)
        result = {
            "upstream_mib": round(mib, 1), "files": sum(len(v["items"]) for v in product["versions"].values()),
            "ssb_s3_mirror_s": round(ours, 2), "ssb_s3_mirror_mib_s": round(mib / ours, 1),
            "ssb_s3_mirror_peak_rss_mib": round(ours_rss, 1),
            "sstream_mirror_s": round(fetch, 2), "sstream_mirror_peak_rss_mib": round(fetch_rss, 1),
            "boto3_upload_s": round(upload, 2), "boto3_upload_peak_rss_mib": round(upload_rss, 1),
            "two_pass_s": round(fetch + upload, 2), "two_pass_mib_s": round(mib / (fetch + upload), 1),
            "speedup": round((fetch + upload) / ours, 2),
            "load_average_end": os.getloadavg()[0],
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
