"""The `ssb-s3` (alias `simplestreams-builder`) command line: options in, one call per command, report out.

Each command parses its options (durations, filters, the listen address...), calls one function of
ssb_s3.commands (ssb_s3.hooks.run for the hooks) and prints what it returns; the orchestration of a
command lives there, not here. Every SSBError becomes one line and exit 1 (SSBGroup).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from . import __version__
from .commands.add import AddRequest, add_image
from .commands.build import BuildOptions, build_product
from .commands.compat import render_report, served_report
from .commands.listing import (
    DEFAULT_COLUMNS,
    list_images,
    list_request,
)
from .commands.mirror import MirrorOptions, MirrorReport, mirror_all, publish_tree
from .commands.mirror import dump as dump_mirror
from .commands.publish import (
    PublishOptions,
    PublishRefused,
    PublishReport,
    dump_json,
    purge,
)
from .commands.steps import StepOutput, build_images_file, build_index, build_versions_manifest, validate
from .commands.storecheck import store_check
from .commands.verify import verify
from .commands.withdraw import remove, summary, withdraw
from .config import (
    StorageConfig,
    TreeConfig,
    base_url_problem,
    config_as_dict,
    endpoint_url_problem,
    load_config,
    parse_duration,
)
from .core.adding import AddError
from .core.mirror import parse_clients
from .core.plan import Withdrawal
from .core.retention import PurgePlan
from .core.versions import version_name_problem
from .errors import ConfigError, ProblemsFound, SSBError, StoreError, capped
from .filters import FilterError
from .hooks.run import consume_sqs, serve_webhook, webhook_token
from .hooks.server import parse_listen
from .ingest.builder import BuildRequest, resolve_image_file
from .ingest.upload import IngestResult
from .storage import httpread, transport
from .storage.backends import open_readable, open_store
from .storage.backends.http import HttpStore
from .storage.lease import force_unlock
from .storage.record import with_recorded
from .storage.store import ReadableStore, Store
from .vocabulary.clients import CLIENTS
from .vocabulary.layout import PRODUCT_RECORD_KEY
from .vocabulary.text import printable

log = logging.getLogger("ssb_s3")


@dataclass
class Settings:
    """Global options, resolved lazily so that --help never needs a tree.yml."""

    config_path: str
    target: str
    apikey: str | None
    endpoint_url: str | None
    region: str | None
    profile: str | None
    verbose: int
    quiet: bool = False
    command: str = ""  # the subcommand run
    config_defaulted: bool = False  # -c not given (nor SSB_CONFIG): ./tree.yml if there is one
    target_defaulted: bool = False  # -t not given (nor SSB_TARGET): the current folder
    _tree: TreeConfig | None = None
    _declared: TreeConfig | None = None
    _missing: ConfigError | None = None  # no tree.yml (none given, none in the working folder)

    def declared(self) -> TreeConfig:
        """tree.yml; without one (none given, none in the working folder) a tree without products."""
        if self._declared is None:
            try:
                self._declared = load_config(self.config_path)
            except ConfigError as exc:
                if Path(self.config_path).exists() or self.config_path != "tree.yml":
                    raise
                self._declared, self._missing = TreeConfig(source_file="(no tree.yml)", products=()), exc
            else:
                if self.config_defaulted and self.command in TREE_YML_OPTIONAL and not self.quiet:
                    echo(f"using ./{self.config_path} (-c FILE to choose another)", err=True)
        return self._declared

    def effective(self) -> TreeConfig:
        """tree.yml's products and those `add` recorded in the tree (storage.record); tree.yml's win."""
        if self._tree is None:
            base = self.declared()
            self._tree = with_recorded(base, open_store(self.target, self.storage_of(base)))
        return self._tree

    @property
    def tree(self) -> TreeConfig:
        """The effective tree; with no tree.yml and no recorded product, tree.yml's 'file not found'."""
        tree = self.effective()
        if self._missing is not None and not tree.products:
            raise self._missing
        return tree

    @property
    def endpoint(self) -> str | None:
        """--endpoint-url, checked: one line instead of boto3's ValueError."""
        problem = endpoint_url_problem(self.endpoint_url) if self.endpoint_url else None
        if problem:
            raise SSBError(f"--endpoint-url '{self.endpoint_url}': {problem}")
        return self.endpoint_url

    @property
    def storage(self) -> StorageConfig:
        return self.storage_of(self.tree)

    def storage_of(self, tree: TreeConfig) -> StorageConfig:
        """`tree`'s storage with the CLI's --endpoint-url, --region and --profile."""
        storage = tree.storage
        return replace(
            storage,
            endpoint_url=self.endpoint or storage.endpoint_url,
            region=self.region or storage.region,
            profile=self.profile or storage.profile,
        )

    def store(self, url: str | None = None) -> Store:
        return open_store(url or self.target, self.storage)


def echo(text: str = "", *, err: bool = False, nl: bool = True, lines: bool = False) -> None:
    """The one printer of the command line: text that may quote outside strings, escaped for the
    terminal (vocabulary/text.printable: no control, bidi-override or line-separator character reaches
    it); `lines` keeps the line breaks of a document of several lines (JSON, YAML, a table), whose
    values are escaped inside it."""
    click.echo(printable(text, newlines=lines), err=err, nl=nl)


class _PrintableFormatter(logging.Formatter):
    """Log lines as echo prints text: a message that quotes outside strings stays one line."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
BROKEN_PIPE = 141  # 128 + SIGPIPE, what shells report for a writer whose reader went away


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush finds no closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
# Commands that run without a tree.yml: picking up ./tree.yml unasked is said (it changes what they do).
TREE_YML_OPTIONAL = frozenset({"mirror", "list", "compat", "purge"})
# Commands that write: stopped anywhere, they leave what is served as it was (an upload is
# invisible until its marker, the catalog is served only once index.json flips), and the same
# command run again finishes the job (uploads resume, copies are checked and skipped).
RESUMABLE = frozenset({"publish", "withdraw", "build-product", "build-versions-manifest", "build-images-file",
                       "build-index", "mirror", "purge", "add", "import", "remove"})


def _fail(lines: list[str], code: int = 1) -> NoReturn:
    for line in lines:
        echo(line, err=True)
    sys.exit(code)


class SSBGroup(click.Group):
    """Turns every SSBError into a clear message and exit 1, never a traceback; Ctrl-C (SIGINT)
    into one line and exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProblemsFound as exc:
            _fail([f"error: {line.strip()}" if i == 0 else line for i, line in enumerate(exc.lines())])
        except SSBError as exc:
            _fail([f"error: {exc}"])
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except BrokenPipeError:  # `ssb-s3 list | head`: the reader has all it wanted
            _quiet_stdout()
            sys.exit(BROKEN_PIPE)
        except KeyboardInterrupt:
            resume = "; re-run the same command to resume" if ctx.invoked_subcommand in RESUMABLE else ""
            _fail([f"error: interrupted{resume}"], INTERRUPTED)
        except Exception as exc:
            verbose = bool(ctx.obj and ctx.obj.verbose)
            if verbose:
                traceback.print_exc()
            hint = "" if verbose else " (run with -v for details)"
            _fail([f"error: unexpected {type(exc).__name__}: {exc}{hint}"])


@click.group(cls=SSBGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ssb-s3")
@click.option("-c", "--config", "config_path", envvar="SSB_CONFIG", default="tree.yml", show_default=True,
              show_envvar=True, help="The tree.yml describing products and the tree.")
@click.option("-t", "--target-dir", "target", envvar="SSB_TARGET", default=".", show_default=True,
              show_envvar=True, help="Where the tree is published: a local folder or s3://BUCKET[/PREFIX].")
@click.option("-k", "--apikey", envvar="SSB_APIKEY", show_envvar=True,
              help="Token sent as 'Authorization: token KEY' when fetching a product's ssb.json from its prefix_path.")
@click.option("--endpoint-url", envvar="SSB_ENDPOINT_URL", show_envvar=True,
              help="S3 endpoint (MinIO, Ceph, SeaweedFS...). Default: AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, "
                   "then tree.yml storage.endpoint_url, then ~/.aws/config (the AWS CLI's order).")
@click.option("--ca-bundle", metavar="FILE",
              help="PEM file of the CA certificates to trust over https (S3 endpoint, --base-url, mirror sources, "
                   "prefix_path). Default: AWS_CA_BUNDLE, then REQUESTS_CA_BUNDLE, then SSL_CERT_FILE, then the "
                   "system's store. Proxies: HTTPS_PROXY, HTTP_PROXY, NO_PROXY.")
@click.option("--region", help="S3 region (default: tree.yml storage.region, then the boto3 chain).")
@click.option("--profile", help="AWS profile for credentials (default: the boto3 credential chain).")
@click.option("-v", "--verbose", count=True, help="More output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
@click.pass_context
def cli(ctx: click.Context, config_path: str, target: str, apikey: str | None, endpoint_url: str | None,
        ca_bundle: str | None, region: str | None, profile: str | None, verbose: int, quiet: bool) -> None:
    """Publish LXD/Incus images to a local folder or S3-compatible storage as a simplestreams tree.

    The tree is what `lxc remote add NAME URL --protocol simplestreams --public` and
    `incus remote add` read. Products are declared in tree.yml (simplestreams-builder format);
    each product's versions live in <directory>/<YYYYMMDD_HH:MM>/ with a <directory>/ssb.json
    manifest beside them.

    Long uploads and copies show their progress: redrawn on a terminal, otherwise one line every
    5 seconds (SSB_PROGRESS_INTERVAL=SECONDS); none with -q.
    """
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_PrintableFormatter("%(levelname)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    transport.set_ca_bundle(ca_bundle)
    defaulted = click.core.ParameterSource.DEFAULT
    ctx.obj = Settings(config_path, target, apikey, endpoint_url, region, profile, verbose, quiet,
                       command=ctx.invoked_subcommand or "",
                       config_defaulted=ctx.get_parameter_source("config_path") == defaulted,
                       target_defaulted=ctx.get_parameter_source("target") == defaulted)


@cli.command("print")
@click.pass_obj
def print_cmd(settings: Settings) -> None:
    """Print the effective tree.yml, defaults filled in.

    A local `source` folder is printed as an absolute path, so that the output, saved anywhere,
    names the same folders.
    """
    echo(yaml.safe_dump(config_as_dict(settings.tree), sort_keys=False), nl=False, lines=True)


@cli.command("build-versions-manifest")
@click.option("-p", "--product", "name", required=True, help="Product name, as in tree.yml.")
@click.option("-s", "--source-dir", "source", help="Store holding the product's folders "
              "(folder or s3://BUCKET[/PREFIX]); default: the product's `source`, else --target-dir.")
@click.option("--stdout", is_flag=True, help="Print the manifest instead of writing <directory>/ssb.json.")
@click.option("--rehash", is_flag=True, help="Hash every version again, even unchanged ones.")
@click.pass_obj
def build_versions_manifest_cmd(settings: Settings, name: str, source: str | None, stdout: bool, rehash: bool) -> None:
    """Scan a product's version folders and write its ssb.json.

    Version folders are named YYYYMMDD_HH:MM (or YYYYMMDD_HHMM); hidden .VERSION folders are
    uploads in progress and are ignored; versions without a metadata file and a root file are
    left out with a warning. Versions already in ssb.json with unchanged sizes are not re-hashed.
    """
    tree = settings.tree
    product = tree.product(name)
    report = build_versions_manifest(tree, settings.store(source or product.source or None), product,
                                     rehash=rehash, stdout=stdout)
    if isinstance(report, str):
        echo(report, nl=False, lines=True)
        return
    echo(
        f"{product.name}: {len(report.hashed)} hashed, {len(report.reused)} unchanged, "
        f"{len(report.removed)} removed, {len(report.skipped)} left out"
        + ("" if report.changed else " (ssb.json already up to date)"),
        err=True,
    )


def _grace(value: str | None, option: str = "--grace") -> int | None:
    """A DURATION option's value in seconds (None if not given); a bad one is named by `option`."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """publish --base-url: an https:// URL (the schema's page.base_url), without a trailing slash."""
    if value is None:
        return None
    problem = base_url_problem(value)
    if problem:
        raise click.BadParameter(problem, param_hint="--base-url")
    return value.rstrip("/")


def _print_purge(plan: PurgePlan, dry_run: bool, detailed: bool = True) -> None:
    """What the purge did or will do; not `detailed` (a publish without -v), the folders left for
    later (within the grace) or kept (never published) are one summary line each."""
    verb = "would delete" if dry_run else "deleted"
    for item in plan.delete_now:
        echo(f"{verb} {item.folder} ({item.objects} objects, {item.size} bytes): {item.reason}")
    for word, items in (("later", plan.delete_later), ("kept", plan.never_published)):
        if detailed:
            for item in items:
                echo(f"{word} {item.folder} ({item.objects} objects, {item.size} bytes): {item.reason}")
        elif items:
            what = "left for a later purge (within the grace)" if word == "later" else \
                "kept (never published by ssb-s3; purge --include-unpublished deletes them)"
            echo(f"{word}: {len(items)} folder(s), {sum(i.objects for i in items)} objects, "
                 f"{sum(i.size for i in items)} bytes {what}; -v lists them")
    for key in plan.old_catalogs:
        echo(f"{verb} old catalog {key}")


def _print_report(report: PublishReport, quiet: bool = False, verbose: int = 0) -> None:
    """What changed, then one summary line (stdout); nothing with -q ("Only errors"); the purge's
    folders one by one with -v."""
    if quiet:
        return
    for name, change in report.changes.items():
        for version in change["added"]:
            echo(f"+ {name} {version}")
        for version in change["removed"]:
            echo(f"- {name} {version}")
    for delta in report.deltas:
        size = "would be made" if delta["size"] is None else \
            f"{delta['size']} bytes, {100 * delta['size'] / max(1, delta['root_size']):.1f}% of the root"
        echo(f"+ delta {delta['path']} ({size})")
    _print_purge(report.purge, report.dry_run, detailed=verbose > 0)
    if report.dry_run:
        echo(f"dry run: {len(report.products)} products, {report.versions} versions, "
                   f"{report.bytes_added} bytes added, catalog {report.catalog_key}; nothing written")
        return
    state = "published" if report.index_written else "unchanged"
    echo(f"{state}: {len(report.products)} products, {report.versions} versions, "
               f"catalog {report.catalog_key}")
    if report.signed:
        echo(f"signed: {len(report.signed)} files in {report.signing_seconds:.2f}s "
                   f"({', '.join(report.signed)})")
    for name in report.kept_previous:
        echo(f"kept the previously published entry of {name}")


@cli.command("build-images-file")
@click.option("-s", "--source-dir", "source", help="Store holding the products' ssb.json (default: --target-dir).")
@click.option("--stdout", is_flag=True, help="Print the catalog instead of writing <images_path>/images.json.")
@click.pass_obj
def build_images_file_cmd(settings: Settings, source: str | None, stdout: bool) -> None:
    """Build the products catalog (images.json) from every product's ssb.json.

    The catalog is checked against what the LXD and Incus clients accept before it is written.
    Same manifests give byte-identical output.
    """
    out = build_images_file(settings.tree, settings.store(), settings.store(source), _check_options(settings),
                            stdout=stdout)
    _print_step(out)


@cli.command("build-index")
@click.option("-s", "--source-dir", "source", help="Store holding the products' ssb.json (default: --target-dir).")
@click.option("--stdout", is_flag=True, help="Print index.json instead of writing streams/v1/index.json.")
@click.pass_obj
def build_index_cmd(settings: Settings, source: str | None, stdout: bool) -> None:
    """Build streams/v1/index.json pointing at <images_path>/images.json (as the seed tool did).

    `publish` does this and build-images-file in the safe order; use these two for step-by-step
    pipelines.
    """
    out = build_index(settings.tree, settings.store(), settings.store(source), _check_options(settings),
                      stdout=stdout)
    _print_step(out)


def _check_options(settings: Settings) -> PublishOptions:
    """What the seed's step-by-step commands read with: the apikey of prefix_path products, the storage."""
    return PublishOptions(apikey=settings.apikey, storage=settings.storage)


def _print_step(out: StepOutput) -> None:
    if out.text is not None:
        echo(out.text, lines=True)
    else:
        echo(f"wrote {out.written}", err=True)


@cli.command("validate")
@click.option("-s", "--source-dir", "source", help="Store holding the products' ssb.json (default: --target-dir).")
@click.pass_obj
def validate_cmd(settings: Settings, source: str | None) -> None:
    """Check tree.yml, every ssb.json, every file they name and the catalog; list every problem.

    Exits 1 if there is any problem. Nothing is written.
    """
    found = validate(settings.tree, settings.store(source), _check_options(settings))
    echo(f"OK: {found.products} products, {found.versions} versions, {found.declared} in tree.yml")


def _lock_timeout(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """A duration as --grace takes it (10m, 1h30m, 600) or a non-negative number of seconds (2.5);
    anything else is one line (SSBGroup), not a usage dump."""
    try:
        return float(parse_duration(value))
    except ValueError:
        pass
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise SSBError(f"--lock-timeout '{value}': expected a duration (e.g. 10m, 1h30m, 600) or a non-negative "
                       "number of seconds")
    return seconds


LOCK_TIMEOUT = click.option("--lock-timeout", default="10m", show_default=True, callback=_lock_timeout,
                            metavar="DURATION", help="How long to wait for another publisher's lease (e.g. 90s, "
                                                     "10m, or seconds).")
GRACE = click.option("--grace", metavar="DURATION",
                     help="Keep files this long after the last catalog naming them was replaced "
                          "(e.g. 90m, 6h, 0; default: tree.yml `grace`, else 6h).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON report.")


def _new_run(ctx: click.Context, param: click.Parameter, limit: int) -> None:
    names: list[str] = []
    at = ctx
    while at.parent is not None:  # the command as typed after the program's name: "verify", "hooks serve"
        names.insert(0, at.info_name or "")
        at = at.parent
    httpread.new_run(limit, f"{' '.join(names)} --max-parse-memory")


PARSE_MEMORY = click.option(
    "--max-parse-memory", type=click.IntRange(1 << 20, 1 << 44), default=httpread.MAX_PARSE_MEMORY, show_default=True,
    metavar="BYTES", expose_value=False, callback=_new_run,
    help="Memory all the JSON documents of this run (index, catalogs, ssb.json; hooks: of each publish) may "
         "take parsed, estimated from each one's bytes before it is parsed; the document that would pass it "
         "stops the run.")


def SERVED_TREE(command: Any) -> Any:
    """The options of commands that read the tree as clients do (verify, list): --base-url and its bounds."""
    for option in reversed((
        click.option("--base-url", metavar="URL", help="Read the tree over http(s) from this URL, as a client "
                     "does (default: --target-dir)."),
        click.option("--timeout", type=click.FloatRange(0.1, 3600), default=httpread.TIMEOUT, show_default=True,
                     metavar="SECONDS", help="With --base-url: seconds without a byte before a request fails."),
        click.option("--deadline", type=click.FloatRange(0.1, 86400), default=httpread.DEADLINE,
                     show_default=True, metavar="SECONDS",
                     help="With --base-url: seconds for one whole request (a file with verify --hashes too)."),
        click.option("--max-catalog-size", type=click.IntRange(1024, 2**40), default=httpread.MAX_DOCUMENT_SIZE,
                     show_default=True, metavar="BYTES", help="With --base-url: largest index.json or catalog read."),
        PARSE_MEMORY,
    )):
        command = option(command)
    return command


@cli.command("publish")
@click.option("--refresh-manifests", is_flag=True,
              help="First bring every product's ssb.json up to date from its folders "
                   "(for builders that upload with other tools); a `source:` product's is read-only: "
                   "used as it is, with a warning naming the versions it lacks.")
@click.option("--rehash", is_flag=True, help="With --refresh-manifests: hash every version again.")
@click.option("--dry-run", is_flag=True, help="Print the change (+/- versions, bytes, deletions) and write nothing.")
@click.option("--keep-going", is_flag=True,
              help="Publish the valid products; each invalid one keeps its last published entry. Exits 1.")
@click.option("--force", is_flag=True, help="Allow emptying a product or the whole tree.")
@click.option("--skip-purge", is_flag=True, help="Do not delete expired files in this run.")
@GRACE
@LOCK_TIMEOUT
@PARSE_MEMORY
@click.option("--cloudfront-distribution", metavar="ID",
              help="CloudFront distribution whose index.json and images.json are invalidated after a change.")
@click.option("--sign-key", metavar="KEYID",
              help="Also publish signed streams (streams/v1/index.sjson, a .sjson twin of each catalog), "
                   "signed by this GnuPG key (default: tree.yml signing.key; GnuPG home: signing.gnupghome, "
                   "else GNUPGHOME).")
@click.option("--base-url", metavar="URL", callback=_base_url,
              help="The https:// URL of this tree, shown in the page's `lxc remote add` lines "
                   "(default: tree.yml page.base_url, else the page's own location).")
@JSON
@click.pass_obj
def publish_cmd(settings: Settings, refresh_manifests: bool, rehash: bool, dry_run: bool, keep_going: bool,
                force: bool, skip_purge: bool, grace: str | None, lock_timeout: float,
                cloudfront_distribution: str | None, sign_key: str | None, base_url: str | None,
                as_json: bool) -> None:
    """Publish the tree: validate everything, write the catalog, flip index.json last, purge.

    Reads every product's ssb.json, keeps the newest `days` versions (and those younger than
    `max_age`), checks them against their schema and the files in the store, and refuses
    (writing nothing) if anything is wrong. Then writes the catalog under a new
    content-addressed key and streams/v1/index.json last with a conditional write, under a
    lease that serialises publishers. Files of expired versions are deleted once no catalog
    current within the grace period names them.
    """
    if settings.target_defaulted and not settings.quiet:
        echo("publishing to local folder . (-t DIR or -t s3://BUCKET to choose the target)", err=True)
    opts = PublishOptions(
        apikey=settings.apikey, storage=settings.storage, refresh_manifests=refresh_manifests, rehash=rehash,
        dry_run=dry_run, keep_going=keep_going, force=force, skip_purge=skip_purge, grace=_grace(grace),
        lock_timeout=lock_timeout, cloudfront_distribution=cloudfront_distribution, quiet=settings.quiet,
        sign_key=sign_key, base_url=base_url,
    )  # fmt: skip
    try:
        report, mirrored = publish_tree(settings.tree, settings.store(), opts)
    except PublishRefused as refused:
        if as_json:  # a script reads the problems here, "published": false; stderr and exit 1 as usual
            echo(dump_json(refused.report.as_dict()), lines=True)
        raise
    if mirrored and dry_run:  # what the mirrors would copy (then the plan of the tree's own products)
        _print_mirror(mirrored, as_json, settings.quiet)
    elif mirrored:
        _print_mirror_notes(mirrored, settings.quiet)
    if report is None:
        return
    if not as_json:
        _print_report(report, settings.quiet, settings.verbose)
    elif not (mirrored and dry_run):  # (a dry run's JSON is the mirrors')
        echo(dump_json(report.as_dict()), lines=True)
    if report.problems:
        problems = capped([str(p) for p in report.problems])
        _fail(["error: some products were not updated:", *(f"  - {p}" for p in problems)])


@cli.command("withdraw")
@click.argument("product")
@click.argument("version", metavar="[VERSION|FINGERPRINT]", required=False, default="")
@click.option("--reason", default="", metavar="TEXT",
              help="Why, recorded in ssb.json (one line, at most 500 characters).")
@click.option("--force", is_flag=True,
              help="Allow withdrawing the last version of a product (it leaves the catalog).")
@click.option("--dry-run", is_flag=True, help="Print what would change (catalog, aliases, files) and write nothing.")
@GRACE
@LOCK_TIMEOUT
@JSON
@click.pass_obj
def withdraw_cmd(settings: Settings, product: str, version: str, reason: str, force: bool, dry_run: bool,
                 grace: str | None, lock_timeout: float, as_json: bool) -> None:
    """Take one version of PRODUCT out of the catalog and out of its ssb.json, in one safe publish.

    VERSION is a version name or an image fingerprint (full, or at least its first 12 hex digits);
    without it, the newest published version. The version is recorded under `withdrawn` in
    ssb.json, so `publish --refresh-manifests` never brings it back. Its files are deleted once no
    catalog current within the grace period names them, by this run or a later publish or purge.
    """

    tree = _tree_or_mirrors_only(settings)  # a mirrored product need not be in tree.yml
    storage = settings.storage_of(tree)
    report = withdraw(tree, open_store(settings.target, storage), Withdrawal(product, version, reason),
                      PublishOptions(apikey=settings.apikey, storage=storage, dry_run=dry_run, force=force,
                                     grace=_grace(grace), lock_timeout=lock_timeout, quiet=settings.quiet))
    _print_withdrawal(report, as_json, settings.quiet)


def _print_withdrawal(report: PublishReport, as_json: bool, quiet: bool) -> None:
    """What withdraw and remove did: the JSON report, or the alias moves and one summary line."""
    if as_json:
        echo(dump_json(report.as_dict()), lines=True)
    elif not quiet:
        for line in summary(report):
            echo(line)
        if report.dry_run:
            echo(f"dry run: catalog {report.catalog_key} would be published; nothing written")
        else:
            echo(f"published: {len(report.products)} products, {report.versions} versions, "
                       f"catalog {report.catalog_key}")


@cli.command("add")
@click.argument("metadata", type=click.Path(path_type=Path))
@click.argument("rootfs", required=False, type=click.Path(path_type=Path))
@click.option("--product-name", metavar="NAME", help="The product (default: os:release:arch:variant from "
              "metadata.yaml); an existing product gets a new version.")
@click.option("--alias", "aliases", multiple=True, metavar="ALIAS", help="Another alias of the product (repeatable).")
@click.option("--no-default-alias", is_flag=True, help="Do not give a new product the alias os/release/variant.")
@click.option("--version", "version", help="Version name (default: metadata.yaml's creation_date as YYYYMMDD_HH:MM).")
@click.option("--days", type=click.IntRange(1, 100000), help="Versions the product keeps (a new product: 3).")
@click.option("--dry-run", is_flag=True, help="Check the files and print the product, version and aliases; "
              "write nothing.")
@click.option("--part-size", type=click.IntRange(5, 5000), default=8, show_default=True,
              help="Multipart part size in MiB.")
@click.option("--concurrency", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Parts uploaded in parallel.")
@LOCK_TIMEOUT
@JSON
@click.pass_obj
def add_cmd(settings: Settings, metadata: Path, rootfs: Path | None, product_name: str | None,
            aliases: tuple[str, ...], no_default_alias: bool, version: str | None, days: int | None, dry_run: bool,
            part_size: int, concurrency: int, lock_timeout: float, as_json: bool) -> None:
    """Serve an image you built or exported: upload it as a new version of its product and publish.

    METADATA [ROOTFS]: a metadata tarball and its root (squashfs, qcow2 or rootfs.tar.xz), the two
    files of `incus image export` / `lxc image export`, one unified tarball, or a classic LXC
    meta.tar.xz + rootfs.tar.xz (for an existing product). The product, its alias os/release/variant
    and the version come from metadata.yaml. No tree.yml is needed: a product tree.yml does not
    declare is recorded in the tree (.ssb-s3/products.json), and later commands read it there.
    """

    if version is not None and version_name_problem(version):
        raise AddError(f"--version '{version}': {version_name_problem(version)}")
    declared = settings.declared()
    tree = settings.effective()
    storage = settings.storage_of(tree)
    request = AddRequest(metadata, rootfs, product_name, aliases, not no_default_alias, version, days, dry_run,
                         part_size * 1024 * 1024, concurrency)
    report = add_image(tree, frozenset(p.name for p in declared.products), open_store(settings.target, storage),
                       request, PublishOptions(apikey=settings.apikey, storage=storage, lock_timeout=lock_timeout,
                                               quiet=settings.quiet), quiet=settings.quiet)
    if as_json:
        click.echo(dump_json(report.as_dict()))
        return
    if settings.quiet:
        return
    for note in report.notes:
        click.echo(note)
    where = f"the tree's record ({PRODUCT_RECORD_KEY})" if report.recorded or report.new_product else ""
    if report.new_product:
        click.echo(f"{report.product}: new product in {report.folder}, aliases {', '.join(report.aliases) or 'none'}"
                   + (f"; {'would be ' if dry_run else ''}recorded in {where}" if where else ""))
    elif report.recorded:
        click.echo(f"{report.product}: aliases {', '.join(report.aliases) or 'none'}, recorded in {where}")
    if report.dry_run:
        files = ", ".join(f"{path} as {name}" for name, path in report.files.items())
        click.echo(f"dry run: {report.product} {report.version or '(the time of the upload)'}: {files}; "
                   "nothing written")
        return
    if report.ingest is not None:
        click.echo(f"{report.product}: version {report.version} {'resumed and ' if report.ingest.resumed else ''}"
                   f"recorded ({len(report.ingest.uploaded)} uploaded, {len(report.ingest.skipped)} already there, "
                   f"{report.ingest.bytes_uploaded} bytes)")
    if report.publish is not None:
        _print_report(report.publish, settings.quiet, settings.verbose)


cli.add_command(add_cmd, "import")


@cli.command("remove")
@click.argument("image", metavar="PRODUCT|FINGERPRINT")
@click.argument("version", metavar="[VERSION]", required=False, default="")
@click.option("--reason", default="", metavar="TEXT", help="Why, recorded in ssb.json (one line).")
@click.option("--force", is_flag=True, help="Allow removing the last version of a product (it leaves the catalog).")
@click.option("--dry-run", is_flag=True, help="Print what would change and write nothing.")
@GRACE
@LOCK_TIMEOUT
@JSON
@click.pass_obj
def remove_cmd(settings: Settings, image: str, version: str, reason: str, force: bool, dry_run: bool,
               grace: str | None, lock_timeout: float, as_json: bool) -> None:
    """Withdraw an image (incus-simplestreams' name for `withdraw`): PRODUCT [VERSION], or the
    fingerprint of an image (at least its first 12 hex digits), whatever its product.

    Out of the catalog now; its files are deleted after the grace period.
    """

    tree = _tree_or_mirrors_only(settings)
    storage = settings.storage_of(tree)
    report = remove(tree, open_store(settings.target, storage), image, version, reason,
                    PublishOptions(apikey=settings.apikey, storage=storage, dry_run=dry_run, force=force,
                                   grace=_grace(grace), lock_timeout=lock_timeout, quiet=settings.quiet))
    _print_withdrawal(report, as_json, settings.quiet)


def _print_mirror_notes(reports: list[MirrorReport], quiet: bool) -> None:
    """What each mirror did, on stderr (its drops were logged by mirror_all, with their reasons)."""
    for report in reports:
        if not quiet:
            echo(f"{report.source}: {len(report.copied)} files copied ({report.bytes_copied} bytes), "
                       f"{len(report.skipped)} already there, {len(report.drops)} dropped", err=True)


def _print_mirror(reports: list[MirrorReport], as_json: bool, quiet: bool) -> None:
    if as_json:
        echo(dump_mirror(reports), lines=True)
        return
    for report in reports:
        for drop in report.drops:
            echo(f"dropped: {drop}")
        for key in report.to_copy:
            echo(f"+ {key}")
        echo(f"dry run: {report.source}: {len(report.products)} products, {report.versions} versions, "
                   f"{len(report.to_copy)} files to copy, {report.bytes_to_copy} bytes; nothing written")


def _tree_or_mirrors_only(settings: Settings) -> TreeConfig:
    """tree.yml; without one (none given, none in the working folder) a tree of mirrored products
    and of the products `add` recorded only."""
    return settings.effective()


@cli.command("mirror")
@click.argument("source")
@click.argument("filters", nargs=-1)
@click.option("--for", "clients", default="lxd,incus", show_default=True,
              help="The clients every mirrored version must serve (twins are added for both: incus.tar.xz of "
                   "lxd.tar.xz, requirements of lxd_requirements).")
@click.option("--max", "max_versions", type=click.IntRange(1, 100000), help="Keep at most N versions per product.")
@click.option("--keep", is_flag=True, help="Keep versions (and products) that have left the source.")
@click.option("--keyring", type=click.Path(dir_okay=False), help="Verify the source's index.sjson with gpgv "
              "against this OpenPGP keyring; a bad signature stops the mirror.")
@click.option("--no-verify", is_flag=True, help="Read a signed source without verifying its signature.")
@click.option("--copies", type=click.IntRange(1, 64), default=4, show_default=True, help="Files copied at once.")
@click.option("--dry-run", is_flag=True, help="List what would be copied and how many bytes; write nothing.")
@click.option("--force", is_flag=True, help="Allow emptying a product or the whole tree.")
@GRACE
@LOCK_TIMEOUT
@PARSE_MEMORY
@JSON
@click.pass_obj
def mirror_cmd(settings: Settings, source: str, filters: tuple[str, ...], clients: str, max_versions: int | None,
               keep: bool, keyring: str | None, no_verify: bool, copies: int, dry_run: bool, force: bool,
               grace: str | None, lock_timeout: float, as_json: bool) -> None:
    """Mirror an upstream simplestreams server (https URL, local folder or s3:// tree) into the tree.

    FILTERS use sstream-mirror's syntax, all ANDed over the item with its version's and product's
    fields: KEY=VALUE, KEY!=VALUE, KEY~REGEX, KEY!~REGEX, e.g.
    `ssb-s3 -t s3://BUCKET/PREFIX mirror https://images.example/ arch=amd64 'release~(jammy|noble)'`.
    Files are streamed, verified against the source's sha256 and size, created only once (those
    already there are skipped); then the tree is published as `publish` does, index.json last.
    With a tree.yml (-c), its own products stay in the same tree.
    """
    tree = _tree_or_mirrors_only(settings)
    try:
        run = MirrorOptions(source=source, filters=filters, clients=parse_clients(clients), max_versions=max_versions,
                            keep=keep, keyring=keyring, verify=not no_verify, copiers=copies)
    except FilterError as exc:
        raise click.BadParameter(str(exc)) from None
    storage = settings.storage_of(tree)
    opts = PublishOptions(storage=storage, dry_run=dry_run, force=force, grace=_grace(grace),
                          lock_timeout=lock_timeout, quiet=settings.quiet)
    try:
        reports = mirror_all(tree, open_store(settings.target, storage), [run], opts)
    except PublishRefused as refused:
        if as_json:
            echo(dump_json(refused.report.as_dict()), lines=True)
        raise
    if dry_run:
        _print_mirror(reports, as_json, settings.quiet)
        if reports[0].publish is not None and not as_json:  # with -c tree.yml: its own products' plan
            _print_report(reports[0].publish, settings.quiet, settings.verbose)
        return
    report = reports[0].publish
    assert report is not None
    if as_json:
        echo(dump_mirror(reports), lines=True)
    else:
        _print_mirror_notes(reports, settings.quiet)
        _print_report(report, settings.quiet, settings.verbose)
    if reports[0].failed:  # the rest was published; these versions were not
        _fail([f"error: {len(reports[0].failed)} version(s) not mirrored, the rest published:",
               *(f"  - {line}" for line in capped([str(p) for p in reports[0].failed]))])


@cli.command("build-product")
@click.argument("name")
@click.option("-s", "--source-dir", "source_dir", help="Folder of image definitions: -i is looked up in "
              "<SRC>/<directory>/ then <SRC>/.")
@click.option("-i", "--image-filename", "image", default="image.yaml", show_default=True,
              help="distrobuilder image definition.")
@click.option("--skip-lxc", is_flag=True, help="Do not build the LXC image (build-lxc).")
@click.option("--skip-lxd", is_flag=True, help="Do not build the LXD/Incus image (build-lxd / build-incus).")
@click.option("--skip-purge", is_flag=True, help="Publish without deleting expired versions.")
@click.option("--incus", is_flag=True, help="Use `distrobuilder build-incus` (distrobuilder 3) instead of build-lxd.")
@click.option("--vm", is_flag=True, help="Build a VM image (metadata + disk.qcow2, published as disk-kvm.img).")
@click.option("--unified", is_flag=True, help="Build a unified tarball (--type=unified) instead of a split image.")
@click.option("-o", "--option", "options", multiple=True, metavar="KEY=VALUE",
              help="Passed to distrobuilder as -o KEY=VALUE (repeatable).")
@click.option("--from-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Take already-built artifacts from this folder instead of running distrobuilder.")
@click.option("--builder", default="distrobuilder", show_default=True, help="distrobuilder executable.")
@click.option("--version", "version", help="Version name (default: the UTC time in --version-format; "
              "an interrupted upload of the same files is resumed).")
@click.option("--version-format", default="%Y%m%d_%H:%M", show_default=True,
              help="strftime format of new version names (UTC); must start with %Y%m%d.")
@click.option("--staging-dir", help="Where distrobuilder writes (default: a temporary folder, removed after).")
@click.option("--part-size", type=click.IntRange(5, 5000), default=8, show_default=True,
              help="Multipart part size in MiB.")
@click.option("--concurrency", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Parts uploaded in parallel.")
@click.option("--no-publish", is_flag=True, help="Only upload and record the version in ssb.json.")
@LOCK_TIMEOUT
@click.pass_obj
def build_product_cmd(settings: Settings, name: str, source_dir: str | None, image: str, skip_lxc: bool,
                      skip_lxd: bool, skip_purge: bool, incus: bool, vm: bool, unified: bool,
                      options: tuple[str, ...], from_dir: Path | None, builder: str, version: str | None,
                      version_format: str, staging_dir: str | None, part_size: int, concurrency: int,
                      no_publish: bool, lock_timeout: float) -> None:
    """Build a product with distrobuilder (or take --from-dir), upload it as a new version, publish.

    Artifacts are checked first (metadata.yaml architecture, file contents); each file is read
    once while it is uploaded (create-only, parallel multipart) and hashed in the same pass; the
    version enters ssb.json only once all its files are in; then the tree is published.
    """
    tree = settings.tree
    product = tree.product(name)
    request = BuildRequest(resolve_image_file(image, source_dir, product.directory), builder, lxd=not skip_lxd,
                           lxc=not skip_lxc, incus=incus, vm=vm, unified=unified, options=options)
    publishing = None if no_publish else PublishOptions(
        apikey=settings.apikey, storage=settings.storage, skip_purge=skip_purge, lock_timeout=lock_timeout,
        quiet=settings.quiet)

    def recorded(result: IngestResult) -> None:
        if not settings.quiet:
            echo(f"{product.name}: version {result.version} {'resumed and ' if result.resumed else ''}"
                 f"recorded ({len(result.uploaded)} uploaded, {len(result.skipped)} already there, "
                 f"{result.bytes_uploaded} bytes)")

    _, report = build_product(tree, settings.store(), settings.store(product.source or None), product, request,
                              BuildOptions(from_dir=from_dir, staging_dir=staging_dir, version=version,
                                           version_format=version_format, vm=vm, unified=unified, incus=incus,
                                           part_size=part_size * 1024 * 1024, concurrency=concurrency,
                                           quiet=settings.quiet, publish=publishing), recorded)
    if report is not None:
        _print_report(report, settings.quiet, settings.verbose)


@cli.command("purge")
@click.option("--dry-run", is_flag=True, help="List what would be deleted and why; delete nothing.")
@click.option("--include-unpublished", is_flag=True,
              help="Also delete expired versions that no catalog of ssb-s3 ever named (e.g. after a migration).")
@GRACE
@LOCK_TIMEOUT
@JSON
@click.pass_obj
def purge_cmd(settings: Settings, dry_run: bool, include_unpublished: bool, grace: str | None,
              lock_timeout: float, as_json: bool) -> None:
    """Delete files of expired versions that no catalog current within the grace period names.

    Only version folders of products in tree.yml, of mirrored products that left the catalog (and
    old catalogs this tool wrote) are ever deleted; what the served catalog names is never touched.
    Without a tree.yml the tree is taken as one of mirrored products only (`mirror`).
    """
    tree = _tree_or_mirrors_only(settings)
    storage = settings.storage_of(tree)
    plan = purge(tree, open_store(settings.target, storage), PublishOptions(
        apikey=settings.apikey, storage=storage, dry_run=dry_run, grace=_grace(grace),
        lock_timeout=lock_timeout, include_unpublished=include_unpublished))  # fmt: skip
    if as_json:
        echo(dump_json(plan.as_dict()), lines=True)
    else:
        _print_purge(plan, dry_run)
        if not (plan.delete_now or plan.delete_later or plan.never_published or plan.old_catalogs):
            echo("nothing to purge")


@cli.command("force-unlock")
@click.pass_obj
def force_unlock_cmd(settings: Settings) -> None:
    """Remove the publish lease of the tree, e.g. after a publisher host died.

    Only do this when you know the holder is gone: two publishers at once are still safe
    (index.json is flipped conditionally) but waste work.
    """
    # no tree.yml needed: a tree made by `add` or `mirror` alone has a lease too
    holder = force_unlock(open_store(settings.target, settings.storage_of(settings.declared())))
    echo("no lease was held" if holder is None else f"removed the lease held for {holder.describe()}")


@cli.command("store-check")
@JSON
@click.pass_obj
def store_check_cmd(settings: Settings, as_json: bool) -> None:
    """Probe what the S3 store does with each conditional request the tool relies on, and print it.

    Every write probes once per store and caches the verdict in .ssb-s3/store.json; this command
    probes again (after a server upgrade, say) and records the new verdict. See the README's table.
    """
    store = _served_store(settings, None, httpread.Limits())
    verdict = store_check(store)
    if as_json:
        echo(dump_json({"store": store.url, "identity": verdict.identity, "usable": verdict.conditional_ok,
                        "operations": dict(verdict.table())}), lines=True)
        return
    echo(f"{store.url} ({verdict.identity})")
    for operation, form in verdict.table():
        echo(f"  {operation:<42} {form}")
    echo("conditional writes: usable" if verdict.conditional_ok else
         f"conditional writes: NOT usable ({verdict.why_not()}): set storage.conditional_writes: false "
         "and run one publisher at a time")


CLIENT_NAMES = click.Choice(list(CLIENTS))


@cli.command("verify")
@click.option("--hashes", is_flag=True, help="Also stream every file and check sha256 and the fingerprints.")
@click.option("--keyring", type=click.Path(exists=True, dir_okay=False, readable=True), metavar="FILE",
              help="Also check the signed streams as sstream-query does: streams/v1/index.sjson and the "
                   "catalogs it names, with gpgv against this keyring (gpg --export KEYID > FILE).")
@click.option("--client", "required", multiple=True, type=CLIENT_NAMES, metavar="NAME",
              help="Require this client (lxd-5.0, lxd, incus, simplestreams) to list every version; repeatable. "
                   "Default: the clients whose items the tree carries.")
@SERVED_TREE
@JSON
@click.pass_context
def verify_cmd(ctx: click.Context, hashes: bool, keyring: str | None, required: tuple[str, ...],
               base_url: str | None, timeout: float, deadline: float, max_catalog_size: int, as_json: bool) -> None:
    """Read the tree as a client does: index → catalog → every file, with its declared size.

    Exits 1 and lists every problem if anything a client would fetch is missing or wrong, or if a
    client the tree serves (one whose items it carries, e.g. LXD for lxd.tar.xz) or a --client
    would not list a version. What other clients will not list is a warning, one line per product
    (see `compat`). Needs no tree.yml when --base-url is given.
    """
    limits = httpread.Limits(timeout=timeout, deadline=deadline, max_size=max_catalog_size, option="verify --{}")
    store = _served_store(ctx.obj, base_url, limits)
    report = verify(store, hashes=hashes, keyring=keyring, require=required)
    for warning in report.warnings:
        log.warning("%s", warning)
    if as_json:
        echo(dump_json(report.as_dict()), lines=True)
    if report.problems:
        _fail([f"error: {store.url}: {len(report.problems)} problem(s)", *(f"  - {p}" for p in report.problems)])
    if not as_json:
        echo(f"OK: {len(report.catalogs)} catalog, {report.products} products, {report.versions} versions, "
                   f"{report.files} files ({report.bytes} bytes)" + (", hashes verified" if hashes else "")
                   + (f", {len(report.signatures)} signatures verified" if keyring else "")
                   + (f", {report.lxc_images} LXC images" if report.lxc_images else "")
                   + f"; clients: {', '.join(report.clients) or 'none'}")


@cli.command("compat")
@click.option("--client", "chosen", multiple=True, type=CLIENT_NAMES, metavar="NAME",
              help="Only these clients (lxd-5.0, lxd, incus, simplestreams); repeatable. Default: all.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "yaml"]), default="table",
              show_default=True, help="Output format.")
@SERVED_TREE
@click.pass_obj
def compat_cmd(settings: Settings, chosen: tuple[str, ...], fmt: str, base_url: str | None, timeout: float,
               deadline: float, max_catalog_size: int) -> None:
    """Which client lists which image: one row per product version, one column per client.

    A cell is `yes (ROOTS)` (the image types the client makes of it, and notes on what it
    ignores: requirements, deltas) or `no: REASON`. Clients: lxd-5.0 (Debian 12's lxd 5.0.2),
    lxd (current LXD, from its source only), incus (Incus 6.0), simplestreams (python-simplestreams).
    Reads the served tree as `list` does; needs no tree.yml.
    """

    limits = httpread.Limits(timeout=timeout, deadline=deadline, max_size=max_catalog_size, option="compat --{}")
    rows, names = served_report(_served_store(settings, base_url, limits), chosen)
    echo(render_report(rows, names, fmt), lines=True)


def _served_store(settings: Settings, base_url: str | None, limits: httpread.Limits) -> ReadableStore:
    """The tree as clients read it: --base-url (http(s), bounded by `limits`) or --target-dir,
    with or without a tree.yml (its storage settings when there is one)."""
    if base_url:
        try:
            store = open_readable(base_url)
        except StoreError as exc:
            raise StoreError(f"--base-url {exc}") from None
        if isinstance(store, HttpStore):
            store.limits = limits
        return store
    storage = settings.storage if _config_exists(settings) else StorageConfig(
        endpoint_url=settings.endpoint, region=settings.region, profile=settings.profile)
    return open_readable(settings.target, storage)


@cli.command("list")
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@click.option("-c", "--columns", default=DEFAULT_COLUMNS, show_default=True,
              help="Columns, as incus image list: l alias, L aliases, f/F fingerprint, p public, d description, "
                   "a architecture, s size, u upload date, t type; and N product, v version, o os, r release.")
@click.option("-f", "--format", "fmt", default="table", show_default=True, metavar="FORMAT[,header|,noheader]",
              help="table, compact or csv (the columns, as incus prints them), or json or yaml (every field of "
                   "each image, sizes in bytes).")
@click.option("--full-fingerprint", is_flag=True, help="Show the whole fingerprint, not its first 12 characters.")
@SERVED_TREE
@click.pass_obj
def list_cmd(settings: Settings, filters: tuple[str, ...], columns: str, fmt: str, full_fingerprint: bool,
             base_url: str | None, timeout: float, deadline: float, max_catalog_size: int) -> None:
    """List the published images as `incus image list REMOTE:` lists them: one row per image.

    FILTERs (ANDed) are KEY=VALUE, KEY!=VALUE, KEY~REGEX or KEY!~REGEX on the fields product,
    version, type, fingerprint, aliases, size, date, arch, os, release and description, e.g.
    `type=virtual-machine` or `product~^debian`. Needs no tree.yml.
    """

    try:  # checked before anything is read
        request = list_request(filters, columns, fmt, full_fingerprint)
    except ValueError as exc:
        _fail([f"error: {exc}"])
    limits = httpread.Limits(timeout=timeout, deadline=deadline, max_size=max_catalog_size, option="list --{}")
    echo(list_images(_served_store(settings, base_url, limits), request), lines=True)


@cli.group("hooks")
def hooks_group() -> None:
    """Republish on bucket events: an SQS consumer and a MinIO webhook receiver.

    (On AWS Lambda use the handler ssb_s3.hooks.aws_lambda.handler.) Only the products an event
    concerns are read and republished; the tree's own keys (streams/v1, meta/1.0, .ssb-s3, the
    catalog folder, the page and its product pages) are ignored.
    """


def _hooks_tree(settings: Settings) -> tuple[TreeConfig, Store, PublishOptions]:
    """The tree a hooks command republishes (-t must be s3://), its store and options; the hooks'
    JSON lines (each publish, each failure with its reason, each request or batch) show at the
    default verbosity (-q: failures only)."""
    if not settings.quiet:
        logging.getLogger("ssb_s3.hooks").setLevel(min(logging.INFO, logging.getLogger().level))
    if not settings.target.startswith("s3://"):
        raise SSBError(f"--target-dir {settings.target}: hooks need the tree's s3://BUCKET[/PREFIX]")
    return settings.tree, settings.store(), PublishOptions(apikey=settings.apikey, storage=settings.storage)


@hooks_group.command("sqs")
@click.option("--queue-url", required=True, help="SQS queue receiving the bucket's event notifications.")
@click.option("--debounce", metavar="DURATION", help="Gather events this long before publishing "
              "(default: tree.yml hooks.debounce, else 2s).")
@click.option("--wait", type=click.IntRange(0, 20), default=20, show_default=True, help="Long-poll seconds.")
@click.option("--sqs-endpoint-url", envvar="AWS_ENDPOINT_URL_SQS", help="SQS endpoint (LocalStack, moto...).")
@PARSE_MEMORY
@click.pass_obj
def hooks_sqs_cmd(settings: Settings, queue_url: str, debounce: str | None, wait: int,
                  sqs_endpoint_url: str | None) -> None:
    """Consume S3 notifications from SQS; delete each message once its publish succeeded.

    Stops cleanly on SIGTERM after the current batch.
    """
    seconds = _grace(debounce, "--debounce")  # checked before anything else
    tree, store, opts = _hooks_tree(settings)
    consume_sqs(tree, settings.target, store, opts, queue_url=queue_url, sqs_endpoint_url=sqs_endpoint_url,
                debounce=seconds, wait=wait)


@hooks_group.command("serve")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to listen on.")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the token MinIO sends (auth_token); default: env SSB_HOOK_TOKEN.")
@click.option("--debounce", metavar="DURATION", help="Gather events this long before publishing "
              "(default: tree.yml hooks.debounce, else 2s).")
@click.option("--max-body", type=int, default=1024 * 1024, show_default=True, help="Largest accepted body (bytes).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True, metavar="SECONDS",
              help="Time allowed to receive a whole request (headers and body); an idle connection is closed after it.")
@click.option("--max-connections", type=click.IntRange(min=1), default=64, show_default=True,
              help="Open connections at most; over it, the oldest one still sending its request is closed, "
                   "or the new one refused (503) if all are busy publishing.")
@PARSE_MEMORY
@click.pass_obj
def hooks_serve_cmd(settings: Settings, listen: str, token_file: Path | None, debounce: str | None,
                    max_body: int, timeout: float, max_connections: int) -> None:
    """Receive MinIO webhook events (POST /) and republish; GET /healthz for probes.

    Needs a token of 16+ characters from SSB_HOOK_TOKEN or --token-file (never on the command
    line); answers 200 only once the event is published.
    """
    seconds = _grace(debounce, "--debounce")  # checked before anything else
    token = webhook_token(token_file)
    try:
        address = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    tree, store, opts = _hooks_tree(settings)
    serve_webhook(tree, settings.target, store, opts, listen=listen, address=address, token=token, debounce=seconds,
                  max_body=max_body, timeout=timeout, max_connections=max_connections,
                  say=lambda line: echo(line, err=True))


def _config_exists(settings: Settings) -> bool:
    return Path(settings.config_path).exists()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ssb-s3")
