"""Bearer tokens agents must send, read from files and re-read when the files change.

The chart mounts the token Secret as a volume; the kubelet replaces its files (a
symlink swap) some time after the Secret changes, at a moment of its own for each
pod. So each request compares the files' identity (one stat each) with what was
loaded, and a rotation needs no restart. A second, optional file holds the
previous token, accepted as well for the overlap while agents catch up
(docs/operations.md, "Rotating the token"). A token file caught empty or unreadable
after start keeps the tokens loaded before.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from kubecarbon.file_identity import FileIdentity, file_identity

log = logging.getLogger(__name__)


class TokenFileError(Exception):
    """The configured token file cannot be used."""


def _read_stripped(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise TokenFileError(f"argument {flag}: cannot read {path}: {exc.strerror}") from None


def read_token(path: Path, flag: str = "--token-file") -> bytes:
    """The bearer token in `path` (surrounding whitespace ignored); refuses an empty one."""
    token = _read_stripped(path, flag)
    if not token:
        raise TokenFileError(f"argument {flag}: {path} is empty")
    return token


def _identity(path: Path) -> FileIdentity | None:
    """None: the file is not there (a Secret without the previous token)."""
    try:
        return file_identity(path)
    except FileNotFoundError:
        return None


class BearerTokens:
    """The tokens a request may carry: fixed ones, or those of a token file and a previous one.

    Both files must be usable at start (TokenFileError otherwise), except that the
    previous token's file may be absent or empty, which means no previous token.
    """

    def __init__(self, token_file: Path | None = None, previous_token_file: Path | None = None,
                 *, fixed: tuple[bytes, ...] = ()) -> None:
        self._token_file = token_file
        self._previous_file = previous_token_file if token_file is not None else None
        self._identities: tuple[FileIdentity | None, FileIdentity | None] | None = None
        self._tokens = fixed
        if token_file is not None:
            self._identities, self._tokens = self._load()

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def accepts(self, given: bytes) -> bool:
        """Whether `given` is one of the tokens; files that changed are read first."""
        self._refresh()
        matched = False
        for token in self._tokens:
            # compare_digest: the time taken must not reveal how much of a token matched;
            # every token is compared, so neither does which one matched
            matched |= hmac.compare_digest(given, token)
        return matched

    def _load(self) -> tuple[tuple[FileIdentity | None, FileIdentity | None], tuple[bytes, ...]]:
        assert self._token_file is not None
        identities = (_identity(self._token_file),
                      _identity(self._previous_file) if self._previous_file else None)
        tokens = [read_token(self._token_file)]
        if self._previous_file is not None and identities[1] is not None:
            previous = _read_stripped(self._previous_file, "--previous-token-file")
            if previous:
                tokens.append(previous)
        return identities, tuple(tokens)

    def _refresh(self) -> None:
        if self._token_file is None:
            return
        identities = (_identity(self._token_file),
                      _identity(self._previous_file) if self._previous_file else None)
        if identities == self._identities:
            return
        try:
            self._identities, self._tokens = self._load()
        except TokenFileError as exc:
            # the identities stay old, so the next request tries again
            log.error("%s; keeping the token(s) loaded before", exc)
            return
        log.info("token file(s) changed: now accepting %d token(s)", len(self._tokens))
