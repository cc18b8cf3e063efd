"""What the tests share besides the real parts: one way to run the CLI, one way to write a tree.yml.

- `ssb(*args)` runs `python -m ssb_s3 ARGS...` in a child process, as a user runs it: output
  captured as text, the exit code left to the test (`check=True` asserts success and shows the
  output when it fails). The child sees this process's environment plus `env`; with `clean=True`,
  none of this process's SSB_* and AWS_* variables (the test names its own credentials and
  endpoint). The checkout under test comes first on its PYTHONPATH. `SSB` is the same command as
  a list, for the few tests that start a long-running child themselves (Popen).
- `invoke(*args)` runs the same command in-process with click's CliRunner (for tests that patch
  the library, e.g. register an image-file kind).
- `tree_yml(*products, **top)` / `write_tree_yml(path, *products, **top)` give a tree.yml from
  Python values (`tree_product()` for one product with busybox defaults, `s3_storage()` for the
  storage of a test server), and `tree_config(...)` the TreeConfig they load to, for tests of the
  library; a test of tree.yml's own syntax writes its YAML by hand instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml
from click.testing import CliRunner, Result

from ssb_s3.cli import cli
from ssb_s3.config import TreeConfig, parse_config

ROOT = Path(__file__).resolve().parents[1]
SSB = [sys.executable, "-m", "ssb_s3"]


def ssb_env(env: Mapping[str, str] | None = None, *, clean: bool = False) -> dict[str, str]:
    """The environment `ssb` gives its child (see the module docstring)."""
    base = {k: v for k, v in os.environ.items() if not (clean and k.startswith(("SSB_", "AWS_")))}
    path = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    return {**base, "PYTHONPATH": path, **(env or {})}


def ssb(*args: str, env: Mapping[str, str] | None = None, cwd: Path | str | None = None, timeout: float = 300,
        clean: bool = False, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """`ssb-s3 ARGS...` in a child process (see the module docstring)."""
    out = subprocess.run([*SSB, *args], env=ssb_env(env, clean=clean), cwd=cwd, capture_output=True, text=True,
                         timeout=timeout, input=input)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def invoke(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """`ssb-s3 ARGS...` in this process (click's CliRunner, `env` set while it runs); an unexpected
    exception propagates."""
    return CliRunner(env=dict(env or {})).invoke(cli, list(args), catch_exceptions=False)


class _Server(Protocol):
    endpoint: str


def s3_storage(server: _Server | str, **more: Any) -> dict[str, Any]:
    """tree.yml's `storage:` for a test S3 server (or an endpoint URL): path-style, us-east-1."""
    endpoint = server if isinstance(server, str) else server.endpoint
    return {"endpoint_url": endpoint, "region": "us-east-1", "addressing_style": "path", **more}


def tree_product(name: str = "busybox:1.36:amd64:default", *, arch: str = "amd64", release: str = "1.36",
            os: str = "Busybox", directory: str = "busybox/amd64/default", **more: Any) -> dict[str, Any]:
    """One product of tree.yml, busybox unless told otherwise; `more` adds its other keys (days, aliases...)."""
    return {"name": name, "arch": arch, "release": release, "os": os, "directory": directory, **more}


class _TreeDumper(yaml.SafeDumper):
    """tree.yml as the README and examples/ write it, so a test may still edit a line of it: items of a
    list indented under their key, a list or mapping of scalars on one line (`aliases: [a, b]`), and a
    string that would read as another type in double quotes (`release: "1.36"`)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    plain = yaml.safe_load(value) if value and "\n" not in value else value
    style = '"' if not isinstance(plain, str) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_TreeDumper.add_representer(str, _str)


def tree_yml(*products: Mapping[str, Any], **top: Any) -> str:
    """A tree.yml: the top-level keys `top` (storage, grace, signing...), then `products`."""
    document = {**top, "products": [dict(p) for p in products]}
    return yaml.dump(document, Dumper=_TreeDumper, sort_keys=False, default_flow_style=None, width=1 << 16,
                     allow_unicode=True)


def tree_config(*products: Mapping[str, Any], **top: Any) -> TreeConfig:
    """The TreeConfig of tree_yml(...), for tests of the library that need no file."""
    return parse_config({**top, "products": [dict(p) for p in products]}, "tree.yml")


def write_tree_yml(path: Path, *products: Mapping[str, Any], **top: Any) -> Path:
    """Write tree_yml(...) to `path` (a folder: its tree.yml); returns the file."""
    conf = path / "tree.yml" if path.is_dir() else path
    conf.write_text(tree_yml(*products, **top))
    return conf
