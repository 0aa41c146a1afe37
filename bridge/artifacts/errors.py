"""Errors of the artifact store and the Hub client. All are `BridgeError`s: the CLI prints them in
one line, and each message names the artifact, repo or file and says what to do next."""

from bridge.errors import BridgeError


class NotCachedError(BridgeError, LookupError):
    """A name that is not in the store, asked for while the Hub cannot be used (offline or no fetch)."""


class ArtifactMissingError(BridgeError, KeyError):
    """`remove(name)` or a similar call on a name that is not bound in Artifacts.toml."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class InvalidNameError(BridgeError, ValueError):
    """An artifact name or file name the store refuses: empty, whitespace only, `.`/`..`, or not
    encodable as UTF-8 (a lone surrogate)."""


class StoreLayoutError(BridgeError):
    """A directory or file of the store's own layout that is a symlink or of the wrong kind: the
    store never follows a link out of its root, so it stops and names the path."""


class StoreIOError(BridgeError):
    """The store could not write (read-only, permission denied, disk full): nothing was bound."""


class HashMismatchError(BridgeError):
    """Bytes that do not hash to what the Hub (or the caller) said they should."""


class SourceFileError(BridgeError, FileNotFoundError):
    """A local file or directory given to the store or to `fetch_file` that does not exist."""


class RepoNotFoundError(BridgeError):
    """The Hub has no such repository, or it is private or gated and no valid token was sent."""


class RevisionNotFoundError(BridgeError):
    """The repository exists but has no such branch, tag or commit."""


class EntryNotFoundError(BridgeError, FileNotFoundError):
    """The repository (or local directory) exists but has no such file."""


class DownloadError(BridgeError):
    """The Hub could not be reached, or a download broke off or came back inconsistent."""


class HostileServerError(DownloadError):
    """The Hub (or a mirror) answered with headers or a body that no Hub sends: an ETag or commit
    that is not a hex hash, or a body larger than the size it declared. Nothing was written."""
