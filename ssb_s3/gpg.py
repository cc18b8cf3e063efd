"""GnuPG, the effect half of signed streams: sign (gpg) and verify (gpgv) by running the programs.

Why the programs and not a Python binding: python-simplestreams (sstream-query, sstream-mirror)
and lxc-ci call the same `gpg`/`gpgv`, so what is written here is checked the way those readers
check it; no new dependency (python-gnupg would be one, and it runs the same program underneath);
and batch mode with `--status-fd` gives machine-readable status lines (INV_SGNR with a reason code,
KEYEXPIRED, BADSIG, NO_PUBKEY, ...), so a failure is reported by type, never by parsing gpg's
human text.

Bounds: every run has a deadline (tree.yml `signing.timeout`, default 60s) and is killed past it;
it reads only what it is given on stdin; no passphrase is ever asked for (`--pinentry-mode error`:
a key with a passphrase must be unlocked in gpg-agent beforehand). Verification uses gpgv with a
fresh empty GnuPG home and only the given keyring, as sstream-query does with `--keyring`.

Invariant: Signer.sign signs everything before anything is written (the caller writes the returned
views), so a failing gpg leaves the published tree as it was. One failure = one SigningError line
naming the key, the GnuPG home and the reason.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .config import SigningConfig
from .core.signed import ToSign
from .core.views import View
from .errors import SSBError

STATUS = "[GNUPG:] "
MAX_CLEARSIGN_LINE = 19993  # longest line that comes back whole from a clearsign (GnuPG 2.2.40, measured)
MAX_REASON = 200  # characters of gpg's own last line quoted in an error

# INV_SGNR / INV_RECP reason codes (GnuPG doc/DETAILS)
INVALID_SIGNER = {
    "1": "no such key",
    "2": "ambiguous: more than one key matches",
    "3": "the key cannot sign",
    "4": "the key is revoked",
    "5": "the key has expired",
    "9": "no secret key for it (only its public key is in the GnuPG home)",
    "10": "the key is not trusted",
    "13": "the key is disabled",
    "14": "not a valid key specification",
}


class SigningError(SSBError):
    """gpg could not sign: missing, expired or unusable key, no gpg, or it failed or hung."""


class SignatureError(SSBError):
    """A signature does not verify against the keyring (bad, unknown key, missing, expired)."""


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: bytes
    status: list[list[str]]  # the [GNUPG:] lines, split
    last_line: str  # gpg's last human line, for reasons no status line names


def run(argv: Sequence[str], data: bytes, timeout: float, what: str, error: type[SSBError]) -> Run:
    """Run a GnuPG program with `data` on stdin, status lines on stderr, bounded by `timeout`."""
    try:
        proc = subprocess.run(list(argv), input=data, capture_output=True, timeout=timeout, check=False,
                              env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise error(f"{what}: the program {argv[0]} is not installed (GnuPG is needed for signed streams)") from None
    except subprocess.TimeoutExpired:
        raise error(f"{what}: {argv[0]} did not finish within {timeout:g}s; nothing was written") from None
    lines = proc.stderr.decode("utf-8", "replace").splitlines()
    status = [line[len(STATUS):].split() for line in lines if line.startswith(STATUS)]
    human = [line for line in lines if line.strip() and not line.startswith(STATUS)]
    return Run(proc.returncode, proc.stdout, status, (human[-1] if human else "")[:MAX_REASON])


def _first(status: list[list[str]], *keywords: str) -> list[str] | None:
    return next((line for line in status if line and line[0] in keywords), None)


@dataclass(frozen=True)
class Signer:
    """Signs with one key from one GnuPG home (None: GNUPGHOME, else gpg's default)."""

    key: str
    gnupghome: str = ""
    timeout: float = 60.0
    detached: bool = False
    program: str = "gpg"

    @classmethod
    def from_config(cls, config: SigningConfig, key: str | None = None) -> Signer | None:
        """tree.yml's `signing`, its key overridden by `publish --sign-key`; None when signing is off."""
        chosen = key or config.key
        if not chosen:
            return None
        return cls(chosen, config.gnupghome, float(config.timeout), config.detached)

    @property
    def home(self) -> str:
        return self.gnupghome or os.environ.get("GNUPGHOME", "") or "~/.gnupg"

    def _argv(self, detached: bool) -> list[str]:
        argv = [self.program, "--batch", "--no-tty", "--status-fd", "2", "--pinentry-mode", "error"]
        if self.gnupghome:
            argv += ["--homedir", self.gnupghome]
        argv += ["--local-user", self.key, "--armor", "--detach-sign" if detached else "--clearsign",
                 "--output", "-"]
        return argv

    def sign_bytes(self, data: bytes, *, detached: bool = False, what: str = "") -> bytes:
        """The clearsigned text of `data` (or its armored detached signature)."""
        where = f"signing {what} with key {self.key} (GnuPG home {self.home})" if what else \
            f"signing key {self.key} (GnuPG home {self.home})"
        result = run(self._argv(detached), data, self.timeout, where, SigningError)
        if result.returncode == 0 and _first(result.status, "SIG_CREATED") and result.stdout:
            return result.stdout
        raise SigningError(f"{where}: {self._reason(result)}; nothing was published")

    @staticmethod
    def _reason(result: Run) -> str:
        invalid = _first(result.status, "INV_SGNR")
        if invalid:
            code = invalid[1] if len(invalid) > 1 else ""
            if code == "9":  # "no secret key" also stands for an expired one: KEY_CONSIDERED's flags tell
                considered = _first(result.status, "KEY_CONSIDERED")
                flags = int(considered[2]) if considered and len(considered) > 2 and considered[2].isdigit() else 0
                if considered is None:
                    return "no such key in the GnuPG home"
                if flags & 2:
                    return "the key has expired or is revoked"
                if flags & 1:
                    return "the key cannot be used to sign"
            return INVALID_SIGNER.get(code, "gpg refused the key")
        if _first(result.status, "KEYEXPIRED", "SIGEXPIRED"):
            return INVALID_SIGNER["5"]
        if _first(result.status, "KEYREVOKED"):
            return INVALID_SIGNER["4"]
        if _first(result.status, "PINENTRY_LAUNCHED", "MISSING_PASSPHRASE", "BAD_PASSPHRASE") or \
                "pinentry" in result.last_line.lower() or "passphrase" in result.last_line.lower():
            return "the secret key needs a passphrase (unlock it in gpg-agent first: gpg-preset-passphrase)"
        return f"gpg failed (exit {result.returncode}): {result.last_line or 'no message'}"

    def check(self) -> None:
        """Fail early, before the lease and any read, when the key cannot sign at all."""
        self.sign_bytes(b"ssb-s3 signing check\n", detached=True)

    def sign(self, requests: Sequence[ToSign]) -> tuple[View, ...]:
        """Every request signed, in order: views to write (nothing is written here)."""
        for request in requests:  # gpg would cut such a line silently, and the signature would not cover it
            longest = 0 if request.detached else max(map(len, request.view.data.split(b"\n")))
            if longest > MAX_CLEARSIGN_LINE:
                raise SigningError(f"signing {request.view.key}: a line of {longest} bytes, over the "
                                   f"{MAX_CLEARSIGN_LINE} GnuPG clearsigns; nothing was published")
        return tuple(replace(r.view, data=self.sign_bytes(r.view.data, detached=r.detached, what=r.view.key))
                     for r in requests)


@dataclass(frozen=True)
class Verified:
    """A signature that verified: the key's fingerprint and the signed bytes (clearsigned only)."""

    fingerprint: str
    content: bytes


def _verify_reason(result: Run, keyring: str) -> str:
    if _first(result.status, "BADSIG"):
        return "BAD signature: the signed content was changed"
    missing = _first(result.status, "NO_PUBKEY")
    if missing:
        return f"signed by key {missing[1] if len(missing) > 1 else '?'}, which is not in the keyring {keyring}"
    for keyword, text in (("EXPKEYSIG", "signed by an expired key"), ("REVKEYSIG", "signed by a revoked key"),
                          ("EXPSIG", "the signature has expired")):
        if _first(result.status, keyword):
            return text
    if _first(result.status, "NODATA") or not _first(result.status, "NEWSIG"):
        return "not signed: no OpenPGP signature found"
    if _first(result.status, "ERRSIG"):
        return f"the signature cannot be checked: {result.last_line or 'gpgv error'}"
    return f"gpgv failed (exit {result.returncode}): {result.last_line or 'no message'}"


def verify(data: bytes, keyring: str, *, signature: bytes | None = None, timeout: float = 60.0,
           program: str = "gpgv") -> Verified:
    """Check a clearsigned document (or `data` against a detached `signature`) with gpgv against
    `keyring` only; SignatureError with the reason when it does not verify."""
    keyring = str(Path(keyring).resolve())  # gpgv reads a bare name from its home, not from here
    with tempfile.TemporaryDirectory(prefix="ssb-gpgv-") as home:
        os.chmod(home, 0o700)
        argv = [program, "--homedir", home, "--status-fd", "2", "--keyring", keyring]
        if signature is None:
            argv += ["--output", "-", "-"]
            stdin = data
        else:
            sig = Path(home, "signature.asc")
            sig.write_bytes(signature)
            body = Path(home, "data")
            body.write_bytes(data)
            argv += [str(sig), str(body)]
            stdin = b""
        result = run(argv, stdin, timeout, f"checking a signature against {keyring}", SignatureError)
    good = _first(result.status, "VALIDSIG")
    if result.returncode == 0 and good and _first(result.status, "GOODSIG"):
        return Verified(good[1] if len(good) > 1 else "", result.stdout)
    raise SignatureError(_verify_reason(result, keyring))

