"""hgf-bridge: one Hugging Face model in both PyTorch and Julia's Flux.

`hgf("bert-base-cased:config")` gives a config, `:model` / `:formaskedlm` / `:tokenizer` ... a
pretrained model, head or tokenizer. Importing this package is cheap: torch is imported only when a
model is asked for.
"""

__version__ = "0.1.0"


def hgf(spec: str, **kwargs):
    """Look up `"<repo_id>[@<revision>]:<item>"` (or `"<local dir>:<item>"`); see `bridge.hgf`."""
    from bridge.hgf import hgf as _hgf

    return _hgf(spec, **kwargs)
