"""One root exception: the CLI turns any SSBError into a one-line message and exit code 1."""

from __future__ import annotations

from collections.abc import Iterable

from .vocabulary.problems import Problem, as_problem


class SSBError(Exception):
    """Base of every error the user can act on; its text names the file, the field and the fix."""


class ConfigError(SSBError):
    """tree.yml is missing, unreadable or does not match the schema."""


class ManifestError(SSBError):
    """A product's ssb.json cannot be read, parsed or fetched."""


class StoreError(SSBError):
    """The local folder or the S3 bucket refused or failed an operation."""


class WithdrawError(SSBError):
    """withdraw cannot do what it was asked (unknown or ambiguous version, the last one without --force,
    a bad reason); nothing was written."""


class SigningRequired(SSBError):
    """A run without a signing key over a signed tree (streams/v1/index.sjson is there): refused
    before anything is written (ssb_s3.commands.publish.refuse_unsigned_over_signed)."""


class BudgetSpent(SSBError):
    """The run's budget of parsed-document memory cannot pay for the next document
    (ssb_s3.storage.httpread.ParseBudget): nothing of it was parsed, and the whole run stops (it is
    no one document's or product's problem, so no caller turns it into one)."""


class Unreachable(SSBError):
    """A server cannot be talked to at all, and no retry would change it: the connection refused, a
    host name that does not resolve, a TLS certificate not trusted or for another name, TLS spoken to
    a plain-http port or plain http to a TLS port, a CA bundle that is not there
    (ssb_s3.storage.transport). Its one line names the URL, the cause and the fix. Not a StoreError:
    no caller turns it into one file's problem, the run stops at the first one; only a product's own
    prefix_path server (storage.tree.fetch_manifest_url) makes it that product's problem."""


class NotFound(StoreError):
    """The key does not exist in the store."""


class Forbidden(StoreError):
    """An http(s) server answered 403 for the key. S3 answers 403, not 404, for a missing key to a
    reader without s3:ListBucket (a GetObject-only bucket policy): the key may be missing or not
    readable. Where the key's absence is normal, the reader says so (httpread.optional_key) and it
    counts as NotFound; anywhere else it is this error, whose text names s3:GetObject."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


class PreconditionFailed(StoreError):
    """A conditional write lost: someone else changed (or created) the key first."""


class TooLarge(StoreError):
    """An object is over the size this tool reads for it."""


MAX_LISTED = 100  # problems listed in text and --json output; the rest are counted


def capped(problems: list[str], limit: int = MAX_LISTED) -> list[str]:
    """The first `limit` problems, then '… and N more' if there are more: output stays bounded."""
    if len(problems) <= limit:
        return problems
    return [*problems[:limit], f"… and {len(problems) - limit} more"]


class ProblemsFound(SSBError):
    """Several independent problems, all counted so that one run shows everything to fix; the
    first MAX_LISTED are listed."""

    def __init__(self, what: str, problems: Iterable[Problem | str]) -> None:
        self.problems: list[Problem] = [as_problem(p) for p in problems]
        self.what = what
        super().__init__(f"{what}: {len(self.problems)} problem(s)")

    def lines(self) -> list[str]:
        return [str(self), *(f"  - {p}" for p in capped([str(p) for p in self.problems]))]
