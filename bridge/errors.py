"""Errors that hgf-bridge raises on bad input.

Every error a user can provoke (a malformed spec, a file that is not cached, a missing key) is a
`BridgeError`, so the CLI can print its message without a traceback. pickle_io has its own
`PickleIOError` family because it stands alone (no dependency on `bridge`).
"""


class BridgeError(Exception):
    """Base class of every error hgf-bridge raises on bad input or missing data."""


class SpecError(BridgeError, ValueError):
    """An hgf spec (`"repo[@rev]:item"`) that does not parse or names an unknown item."""


class ConfigError(BridgeError, ValueError):
    """A config.json that is missing, malformed, or names a model type we cannot serve."""


class MissingDependencyError(BridgeError, ImportError):
    """An optional dependency (torch, juliacall) that the feature asked for needs; says what to install."""


def require_torch(feature: str = "models") -> None:
    """MissingDependencyError naming the install command unless PyTorch can be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"hgf-bridge {feature} need PyTorch, which is not installed: "
            "pip install 'hgf-bridge[torch]' (or any torch >= 2.13; on Linux, PyTorch's CPU-only "
            "wheels come from its own index: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from None
