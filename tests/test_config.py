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


@pytest.mark.parametrize(("yaml_fields", "expected"), [
    # the seed decoded tree.yml with viper + mapstructure's weak typing: these are its meanings
    ("release: 12", {"release": "12"}),
    ("release: 12.10", {"release": "12.1"}),  # a YAML float, printed by Go as 12.1: quote it to keep 12.10
    ("release: '12.10'", {"release": "12.10"}),
    ("release: 1; release_title: 2024", {"release": "1", "release_title": "2024"}),
    ("days: '3'", {"days": 3}),
    ("days: 2.9", {"days": 2}),
    ("days: '0x10'", {"days": 16}),
    ("days: true", {"days": 1}),
    ("hidden: 'true'", {"hidden": True}),
    ("hidden: 'F'", {"hidden": False}),
    ("hidden: 1", {"hidden": True}),
    ("hidden: ''", {"hidden": False}),
    ("aliases: debian/12", {"aliases": ("debian/12",)}),
    ("aliases: [debian, 12]", {"aliases": ("debian", "12")}),
    ("version: 3", {"version": "3"}),
])
def test_values_the_seed_converted_are_read_with_its_meaning(
        tmp_path: Path, yaml_fields: str, expected: dict[str, object]) -> None:
    base = {"name": "a", "arch": "x86_64", "release": "'1'", "os": "A", "directory": "a"}
    for pair in yaml_fields.split("; "):
        key, value = pair.split(": ", 1)
        base[key] = value
    fields = ", ".join(f"{k}: {v}" for k, v in base.items())
    product = load_config(write(tmp_path, f"products:\n - {{{fields}}}\n")).products[0]
    assert {key: getattr(product, key) for key in expected} == expected


@pytest.mark.parametrize(("yaml_fields", "field", "text"), [
    ("hidden: 'no'", "products[0].hidden", 'expected boolean, got "no"'),  # strconv.ParseBool refuses it too
    ("days: '2 '", "products[0].days", 'expected integer, got "2 "'),
    ("days: 'two'", "products[0].days", 'expected integer, got "two"'),
    ("variant: [12]", "products[0].variant", "expected string"),
    ("requirements: {nesting: 1}", "products[0].requirements.nesting", "expected string, got 1"),  # ours: strict
])
def test_values_the_seed_refused_are_still_refused(tmp_path: Path, yaml_fields: str, field: str, text: str) -> None:
    key, value = yaml_fields.split(": ", 1)
    product = f"name: a, arch: x86_64, release: '1', os: A, directory: a, {key}: {value}"
    path = write(tmp_path, f"products:\n - {{{product}}}\n")
    with pytest.raises(ProblemsFound) as caught:
        load_config(path)
    assert field in str(caught.value.problems) and text in str(caught.value.problems)


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
        (", aliases: 'a,b'", "products[0].aliases[0]"),  # one value is a list of one (the seed's weak typing)
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
