"""The two long-running hooks commands, `hooks sqs` and `hooks serve`, as one call each.

The CLI parses the options (durations, the listen address, the -t s3:// target) and calls
`consume_sqs` or `serve_webhook`; each builds the Republisher of the tree and runs until it is
stopped. Invariants:
- a webhook token comes from SSB_HOOK_TOKEN or a file (`webhook_token`), never the command line,
  and is at least MIN_TOKEN characters: the server does not start without one;
- the debounce defaults to tree.yml's `hooks.debounce`;
- SIGTERM stops both cleanly: the SQS loop after its current batch (hooks/sqs.py), the webhook
  server like Ctrl-C, closing its socket and its coalescer.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..commands.publish import PublishOptions
from ..config import TreeConfig
from ..errors import SSBError
from ..storage.store import Store
from .republish import Coalescer, Republisher
from .server import HookServer
from .sqs import SqsConsumer

MIN_TOKEN = 16


def consume_sqs(tree: TreeConfig, target_url: str, store: Store, opts: PublishOptions, *, queue_url: str,
                sqs_endpoint_url: str | None, debounce: int | None, wait: int) -> None:
    """Consume the bucket's S3 notifications from `queue_url` and republish, until SIGTERM."""
    import boto3  # costly, and only this command needs it here

    republisher = Republisher(tree, target_url, store, opts)
    storage = opts.storage or tree.storage
    session = boto3.session.Session(profile_name=storage.profile, region_name=storage.region)
    client = session.client("sqs", endpoint_url=sqs_endpoint_url)
    seconds = tree.hooks.debounce if debounce is None else debounce
    SqsConsumer(republisher, queue_url, client, debounce=float(seconds or 0), wait=wait).run()


def webhook_token(token_file: Path | None) -> str:
    """The token MinIO sends: --token-file's content, else SSB_HOOK_TOKEN; at least MIN_TOKEN characters."""
    token = _read_token(token_file) if token_file else os.environ.get("SSB_HOOK_TOKEN", "")
    if len(token) < MIN_TOKEN:
        raise SSBError(f"a token of at least {MIN_TOKEN} characters is required: set SSB_HOOK_TOKEN or --token-file "
                       "(the same value as MinIO's notify_webhook auth_token)")
    return token


def _read_token(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SSBError(f"--token-file {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SSBError(f"--token-file {path}: not UTF-8 text") from None


def serve_webhook(tree: TreeConfig, target_url: str, store: Store, opts: PublishOptions, *, listen: str,
                  address: tuple[str, int], token: str, debounce: int | None, max_body: int, timeout: float,
                  max_connections: int, say: Callable[[str], None]) -> None:
    """Receive MinIO's webhook events on `address` (parsed from `listen`) and republish, until Ctrl-C
    or SIGTERM; `say` prints the one line on listening and the one on stopping."""
    seconds = tree.hooks.debounce if debounce is None else debounce
    coalescer = Coalescer(Republisher(tree, target_url, store, opts), float(seconds or 0))
    try:
        server = HookServer(address, token, coalescer, max_body, timeout, max_connections)
    except OSError as exc:
        coalescer.close()
        raise SSBError(f"cannot listen on {listen}: {exc.strerror}") from None
    say(f"listening on http://{address[0]}:{server.server_address[1]}/")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        say("stopping")
    finally:
        server.server_close()
        coalescer.close()


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM: leave serve_forever like Ctrl-C does, then close cleanly."""
    raise KeyboardInterrupt
