"""hgf-bridge: one Hugging Face model in both PyTorch and Julia's Flux.

`hgf("bert-base-cased:config")` gives a config, `:model` / `:formaskedlm` / `:tokenizer` ... a
pretrained model, head or tokenizer. Importing this package is cheap: torch and huggingface_hub are
imported only when a model or a download is asked for.
"""

# Binding the function here also settles the name: the package attribute `bridge.hgf` is this
# function, while `import bridge.hgf` / `from bridge.hgf import parse_spec` still reach the module.
from bridge.hgf import hgf

__version__ = "0.1.0"
__all__ = ["hgf", "__version__"]
