"""The documentation stays true: every `ssb-s3 ...` command line of the operator's guide names a
real subcommand and only options that subcommand accepts, and every relative link of README.md and
docs/*.md leads to a file that exists.

Options are checked against click's own command objects (ssb_s3.cli.cli), in-process: no
subprocess, so the whole file runs in well under a second. Global options (-c, -t, ...) are
checked where click accepts them, before the subcommand; an option written after the subcommand
must belong to it, as click would refuse it otherwise.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from ssb_s3.cli import cli

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "operator-guide.md"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")", "$(", "`"}


def _options(command: click.Command) -> tuple[set[str], set[str]]:
    """(every option name the command accepts, the names of those that take a value)."""
    names: set[str] = set()
    valued: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            opts = set(param.opts) | set(param.secondary_opts)
            names |= opts
            if not param.is_flag and not param.count:
                valued |= opts
    return names, valued


def _commands(text: str) -> list[list[str]]:
    """Every `ssb-s3 ...` invocation of the text's fenced code blocks, as tokens after `ssb-s3`."""
    found: list[list[str]] = []
    for block in FENCE.findall(text):
        joined = re.sub(r"\\\n", " ", block)
        for line in joined.splitlines():
            if "ssb-s3" not in line:
                continue
            line = line.lstrip().removeprefix("$ ")
            lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;()")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            try:
                tokens = list(lexer)
            except ValueError:  # an unbalanced quote in prose-like text: take the plain split
                tokens = line.split()
            current: list[str] | None = None
            for token in tokens:
                if token in SEPARATORS or set(token) <= set("|&;()"):
                    if current is not None:
                        found.append(current)
                    current = None
                elif token == "ssb-s3" and current is None:
                    current = []
                elif current is not None:
                    current.append(token)
            if current is not None:
                found.append(current)
    return found


def check_command(tokens: list[str]) -> list[str]:
    """The problems of one invocation (tokens after `ssb-s3`): an unknown subcommand or option."""
    problems: list[str] = []
    line = "ssb-s3 " + " ".join(tokens)
    group: click.Command = cli
    names, valued = _options(group)
    i = 0
    path: list[str] = []
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            if name not in names and name not in ("-h", "--help"):
                where = " ".join(path) or "ssb-s3"
                problems.append(f"{line}: {where} has no option {name}")
                return problems  # its value, if any, cannot be told from an argument
            if name in valued and "=" not in token:
                i += 1  # its value
            i += 1
            continue
        if isinstance(group, click.Group):
            sub = group.commands.get(token)
            if sub is None:
                problems.append(f"{line}: no command {' '.join([*path, token])}")
                return problems
            group = sub
            path.append(token)
            names, valued = _options(group)
        i += 1
    if isinstance(group, click.Group) and group is cli and not problems and tokens and not path:
        problems.append(f"{line}: no subcommand")
    return problems


def test_guide_commands_exist_with_their_options() -> None:
    commands = _commands(GUIDE.read_text(encoding="utf-8"))
    assert len(commands) >= 30, f"only {len(commands)} ssb-s3 command lines found in {GUIDE}"
    named = {next((t for t in c if not t.startswith("-") and t in cli.commands), "") for c in commands}
    for needed in ("publish", "store-check", "mirror", "withdraw", "verify", "list", "compat", "force-unlock", "hooks"):
        assert needed in named, f"the guide shows no `ssb-s3 {needed}` command"
    problems = [p for c in commands for p in check_command(c)]
    assert not problems, "\n".join(problems)


def test_checker_catches_a_misspelled_option_or_command() -> None:
    text = (
        "```sh\n"
        "ssb-s3 -t s3://b mirror https://x/ --keyrign k.gpg\n"
        "ssb-s3 -t s3://b hooks serve --listen 127.0.0.1:8080 \\\n  --max-conections 3\n"
        "ssb-s3 -t s3://b verfy\n"
        "ssb-s3 -t s3://b publish --keyring k.gpg   # a verify option\n"
        "ssb-s3 --endpoint https://s3 -t s3://b publish\n"
        "ssb-s3 -t s3://b list -c Nvfa -f csv,header && ssb-s3 -t s3://b verify --hashes\n"
        "```\n"
    )
    problems = [p for c in _commands(text) for p in check_command(c)]
    assert len(problems) == 5, problems
    for bad in ("--keyrign", "--max-conections", "verfy", "--keyring", "--endpoint"):
        assert any(bad in p for p in problems), (bad, problems)


def _relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    out: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", path.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_relative_links_lead_to_files(doc: Path) -> None:
    broken = []
    for target in _relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target} (no {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{doc.relative_to(ROOT)}: broken links: " + ", ".join(broken)


def test_readme_links_the_guide() -> None:
    assert "docs/operator-guide.md" in _relative_links(ROOT / "README.md")
