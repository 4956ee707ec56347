"""Bearer tokens agents must send, read from files and re-read when the files change.

The chart mounts the token Secret as a volume; the kubelet replaces its files (a
symlink swap) some time after the Secret changes, at a moment of its own for each
pod. So each request looks whether the files changed (kubecarbon.file_backed: one
stat each), and a rotation needs no restart. A second, optional file holds the
previous token, accepted as well for the overlap while agents catch up
(docs/operations.md, "Rotating the token"). A token file caught empty or unreadable
after start keeps the tokens loaded before.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from kubecarbon.file_backed import FileBackedValue

log = logging.getLogger(__name__)


class TokenFileError(Exception):
    """The configured token file cannot be used."""


def _read_stripped(path: Path, flag: str, *, missing_ok: bool = False) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        if missing_ok and isinstance(exc, FileNotFoundError):
            return b""
        raise TokenFileError(f"argument {flag}: cannot read {path}: {exc.strerror}") from None


def read_token(path: Path, flag: str = "--token-file") -> bytes:
    """The bearer token in `path` (surrounding whitespace ignored); refuses an empty one."""
    token = _read_stripped(path, flag)
    if not token:
        raise TokenFileError(f"argument {flag}: {path} is empty")
    return token


def read_tokens(token_file: Path, previous_token_file: Path | None) -> tuple[bytes, ...]:
    """The token, then the previous one if its file is there and not empty."""
    tokens = [read_token(token_file)]
    if previous_token_file is not None:
        # absent: a Secret without the previous token
        previous = _read_stripped(previous_token_file, "--previous-token-file", missing_ok=True)
        if previous:
            tokens.append(previous)
    return tuple(tokens)


class BearerTokens:
    """The tokens a request may carry: fixed ones, or those of a token file and a previous one.

    Both files must be usable at start (TokenFileError otherwise), except that the
    previous token's file may be absent or empty, which means no previous token.
    """

    def __init__(self, token_file: Path | None = None, previous_token_file: Path | None = None,
                 *, fixed: tuple[bytes, ...] = ()) -> None:
        self._fixed = fixed
        self._files: FileBackedValue[tuple[bytes, ...]] | None = None
        if token_file is not None:
            paths = [token_file, *([previous_token_file] if previous_token_file else [])]
            self._files = FileBackedValue(
                paths, lambda: read_tokens(token_file, previous_token_file),
                bad_content=(TokenFileError,), logger=log, what="token(s)", level=logging.ERROR,
            )

    @property
    def enabled(self) -> bool:
        return self._files is not None or bool(self._fixed)

    def accepts(self, given: bytes) -> bool:
        """Whether `given` is one of the tokens; files that changed are read first."""
        tokens = self._fixed if self._files is None else self._files.current()
        matched = False
        for token in tokens:
            # compare_digest: the time taken must not reveal how much of a token matched;
            # every token is compared, so neither does which one matched
            matched |= hmac.compare_digest(given, token)
        return matched
