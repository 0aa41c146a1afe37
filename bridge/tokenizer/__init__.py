"""Tokenizers identical to transformers', built on the `tokenizers` library.

    from bridge.tokenizer import load_tokenizer
    tok = load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")   # or a local directory
    batch = tok(["Hello world", "Hi"], padding=True, return_tensors="np")
    tok.decode(batch["input_ids"][0], skip_special_tokens=True)
    tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)

Modules: `settings` (the JSON side files, the family), `assemble` (the `tokenizers.Tokenizer` from
tokenizer.json, vocab.txt or vocab.json + merges.txt), `pretrained_tokenizer` (the call interface),
`chat` (chat templates), `loading` (`load_tokenizer`).
"""

from bridge.tokenizer.loading import load_tokenizer
from bridge.tokenizer.pretrained_tokenizer import Tokenizer
from bridge.tokenizer.settings import ChatTemplateError, TokenizerError

__all__ = ["ChatTemplateError", "Tokenizer", "TokenizerError", "load_tokenizer"]
