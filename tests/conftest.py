"""Test-wide isolation: no test reads or writes the user's caches or reaches the real Hub.

These variables are set at import, before any test imports huggingface_hub (which reads some of
them once, at its own import).
"""

import os
import tempfile

_SANDBOX = tempfile.mkdtemp(prefix="hgf-bridge-tests-")
os.environ["HGF_BRIDGE_HOME"] = os.path.join(_SANDBOX, "bridge-home")
os.environ["HF_HOME"] = os.path.join(_SANDBOX, "hf-home")
os.environ["HF_HUB_CACHE"] = os.path.join(_SANDBOX, "hf-home", "hub")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # discard port: a stray real-Hub call fails fast
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_HUB_OFFLINE", None)
