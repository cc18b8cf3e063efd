"""tree.yml: seed keys and defaults, new keys, and errors that name file, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssb_s3.config import load_config
from ssb_s3.errors import ConfigError, ProblemsFound

SEED_TREE = """
prefix: 'images'
images_path: streams/v1
datatype: image-downloads
format: "products:1.0"
products:
  - name: sabayon-builder:current:amd64:default
    arch: amd64
    release: current
    os: Sabayon
    release_title: "Sabayon Builder"
    directory: sbi/sabayon-builder
    prefix_path: "http://my.mottainai.org/namespace/lxd-sabayon-builder"
    aliases:
      - "sabayon/builder"
  - name: sabayon-base:current:amd64:default
    arch: amd64
    release: current
    os: Sabayon
    directory: sbi/sabayon-base
    hidden: true
    days: 0
    build_script_hook: ./hook.sh
    version: "1"
    aliases:
      - "sabayon/base"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tree.yml"
    path.write_text(text)
    return path


def test_seed_tree_yml_loads_with_seed_defaults(tmp_path: Path) -> None:
    tree = load_config(write(tmp_path, SEED_TREE))
    assert tree.prefix == "images"
    assert tree.catalog_dir == "images/streams/v1"
    builder, base = tree.products
    assert builder.prefix_path == "http://my.mottainai.org/namespace/lxd-sabayon-builder"
    assert builder.days == 1 and builder.hidden is False
    assert builder.release_title == "Sabayon Builder"
    assert base.hidden is True and base.days == 1  # the seed turned days <= 0 into 1
    assert base.release_title == "current"  # defaults to release
    assert tree.manifest_key(base) == "images/sbi/sabayon-base/ssb.json"


def test_defaults_when_only_products_given(tmp_path: Path) -> None:
    tree = load_config(write(tmp_path, "products:\n - {name: a, arch: x86_64, release: '1', os: A, directory: a}\n"))
    assert (tree.prefix, tree.images_path, tree.datatype, tree.format) == (
        "", "streams/v1", "image-downloads", "products:1.0",
    )
    assert tree.storage.checksum_mode == "when_supported"


def test_new_keys(tmp_path: Path) -> None:
    tree = load_config(write(tmp_path, """
storage: {endpoint_url: "http://127.0.0.1:9000", region: eu-west-1, addressing_style: path,
          checksum_mode: when_required}
products:
  - name: debian:12:amd64:cloud
    arch: amd64
    release: "12"
    os: Debian
    directory: debian/12/cloud
    variant: cloud
    requirements: {secureboot: "false", cgroup: v2}
    support_eol: 2028-06-30
    source: s3://builds/debian
"""))
    (product,) = tree.products
    assert product.support_eol == "2028-06-30"  # a YAML date stays a string
    assert dict(product.requirements) == {"secureboot": "false", "cgroup": "v2"}
    assert product.source == "s3://builds/debian"
    assert tree.storage.addressing_style == "path"
    assert tree.storage.checksum_mode == "when_required"


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ProblemsFound) as info:
        load_config(write(tmp_path, text))
    return [str(p) for p in info.value.problems]


PRODUCT = "  - {name: a, arch: amd64, release: '1', os: A, directory: a"


def test_misspelled_key_names_it_and_the_closest_valid_key(tmp_path: Path) -> None:
    (msg,) = problems_of(tmp_path, f"products:\n{PRODUCT}, arhc: amd64}}\n")
    assert str(tmp_path / "tree.yml") in msg
    assert "products[0].arhc: unknown key" in msg and "did you mean 'arch'" in msg


def test_misspelled_top_level_key(tmp_path: Path) -> None:
    (msg,) = problems_of(tmp_path, f"image_path: x\nproducts:\n{PRODUCT}}}\n")
    assert "image_path: unknown key" in msg and "'images_path'" in msg


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (", requirements: {secureboot: false}", "products[0].requirements.secureboot: expected string"),
        (", days: -100001", "products[0].days"),  # the seed turns days <= 0 into 1: -1 is valid
        (", aliases: ['a, b']", "products[0].aliases[0]"),
        (", aliases: 'a,b'", "products[0].aliases: expected array"),
        (", support_eol: 1700000000", "products[0].support_eol: expected string"),
        (", directory: ../up", "products[0].directory"),
        (", prefix_path: ftp://x", "products[0].prefix_path"),
        (", hidden: 'yes'", "products[0].hidden: expected boolean"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, extra: str, expected: str) -> None:
    text = f"products:\n  - {{name: a, arch: amd64, release: '1', os: A, directory: a{extra}}}\n"
    text = text.replace("directory: a, directory:", "directory:")
    msgs = problems_of(tmp_path, text)
    assert any(expected in m for m in msgs), msgs


def test_unknown_arch_and_duplicates_all_listed(tmp_path: Path) -> None:
    msgs = problems_of(tmp_path, f"""products:
{PRODUCT.replace('amd64', 'amd46')}}}
{PRODUCT}}}
""")
    assert any("products[0].arch: 'amd46' is not an architecture LXD knows" in m for m in msgs)
    assert any("products[1].name: 'a' is already used by products[0]" in m for m in msgs)
    assert any("products[1].directory: 'a' is already used" in m for m in msgs)


def test_missing_required_key(tmp_path: Path) -> None:
    (msg,) = problems_of(tmp_path, "products:\n  - {name: a, arch: amd64, release: '1', os: A}\n")
    assert "products[0]: 'directory' is required" in msg


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yml")
    with pytest.raises(ConfigError, match=r"tree.yml: line \d+, column \d+: invalid YAML"):
        load_config(write(tmp_path, "products:\n  - [\n"))
    with pytest.raises(ConfigError, match="empty"):
        load_config(write(tmp_path, ""))
