"""Copies checked while they stream: size, sha256, and every image fingerprint (combined_*_sha256).

A fingerprint is sha256(meta bytes ‖ root bytes): the meta files are copied first (core.plan.copies
orders them so), their sha256 states kept here, and each root's bytes go on from them as it streams.
Any mismatch raises FileMismatch at the end of the stream, before the store commits the object (a
store's upload commits only once the stream ended without error), so a false claim creates nothing.
A meta file already in the target is read from there (small), so that a new root can still be checked.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, BinaryIO, cast

from ..core.plan import Copy
from ..errors import StoreError
from .store import CHUNK_SIZE, Store


class FileMismatch(StoreError):
    """A copied file is not what its ssb.json says (size, sha256 or an image fingerprint)."""


class Fingerprints:
    """One copy run: the sha256 state of each meta file copied (or found) so far, by path."""

    def __init__(self) -> None:
        self._states: dict[str, Any] = {}

    def reader(self, copy: Copy, inner: BinaryIO, where: str) -> BinaryIO:
        """`inner` read through: at its end, FileMismatch unless its size, sha256 and fingerprints are
        those `copy` gives; its sha256 state is kept for the roots that follow."""
        return cast(BinaryIO, io.BufferedReader(_Checked(self, copy, inner, where), CHUNK_SIZE))

    def present(self, copy: Copy, target: Store, metas: set[str]) -> None:
        """A file already in the target: when it is a meta file a root still to copy needs, its state
        is read from there (and its sha256 checked)."""
        if copy.path in metas and copy.path not in self._states:
            with target.open_reader(copy.path) as inner, self.reader(copy, inner, target.describe(copy.path)) as fh:
                while fh.read(CHUNK_SIZE):
                    pass

    def _start(self, meta: str) -> Any:
        state = self._states.get(meta)
        return state.copy() if state is not None else None


class _Checked(io.RawIOBase):
    def __init__(self, owner: Fingerprints, copy: Copy, inner: BinaryIO, where: str) -> None:
        self._owner, self._copy, self._inner, self._where = owner, copy, inner, where
        self._hash = hashlib.sha256()
        self._combined = [(meta, name, value, owner._start(meta)) for meta, name, value in copy.combined]
        self._size = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        if data:
            self._size += len(data)
            self._hash.update(data)
            for _, _, _, state in self._combined:
                if state is not None:
                    state.update(data)
            buffer[:len(data)] = data
            return len(data)
        if not self._checked:
            self._checked = True
            self._check()
        return 0

    def _check(self) -> None:
        copy = self._copy
        if self._size != copy.size:
            raise FileMismatch(f"{self._where}: {self._size} bytes, its ssb.json gives {copy.size}: refusing the file")
        if copy.sha256 and self._hash.hexdigest() != copy.sha256:
            raise FileMismatch(f"{self._where}: sha256 {self._hash.hexdigest()}, its ssb.json gives {copy.sha256}: "
                               "refusing the file")
        for meta, name, value, state in self._combined:
            if state is None:
                raise FileMismatch(f"{self._where}: its fingerprint {name} could not be computed ({meta} was "
                                   "not read before it): refusing the file")
            if state.hexdigest() != value:
                raise FileMismatch(f"{self._where}: sha256({meta.rsplit('/', 1)[-1]} ‖ this file) is "
                                   f"{state.hexdigest()}, {name} of its ssb.json gives {value}: refusing the file")
        self._owner._states[copy.path] = self._hash.copy()
