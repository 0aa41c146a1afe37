"""A NumPy model of HGFBridge's Flux forward passes, to prove bridge.flux_layout without Julia.

Arrays are held exactly as Julia holds them: the numpy array with the Julia shape, in Fortran
order, fetched by the Flux field path of the tables (`weights[("bert", "layers", 1, "attention",
"query", "weight")]`). Every operation is the one the Julia code performs, written on these
arrays: `W @ x` is Julia's `W * x`, reshapes are column-major (`order="F"`), activations are
(features, seq, batch), token ids are 1-based, masks use NNlib's convention (true = attend), and
attention follows `NNlib.dot_product_attention` step by step (split heads by a column-major
reshape, scale the query by 1/sqrt(head_dim), scores (key, query, head, batch), softmax over keys).
Each function names the Julia method it models (julia/layers.jl, bert.jl, gpt2.jl, src/llama.jl).

The torch side of every comparison (tiny random transformers models, their inputs and outputs) is
here too, so that julia/test/runtests.jl (through PythonCall) checks the Julia code against
exactly the oracles tests/test_flux_layout.py uses.
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch
import transformers

from bridge.config import CONFIG_CLASSES
from bridge.flux_layout import flux_hyperparameters, flux_table, flux_weights

Path = Tuple

# ---- torch oracles: tiny random transformers models

VOCAB, BATCH, SEQ = 40, 2, 7
PAD = 1  # RoBERTa's padding id; also used as GPT-2's and BERT's here

HF_CLASSES = {
    ("bert", "model"): transformers.BertModel,
    ("bert", "formaskedlm"): transformers.BertForMaskedLM,
    ("bert", "forsequenceclassification"): transformers.BertForSequenceClassification,
    ("gpt2", "model"): transformers.GPT2Model,
    ("gpt2", "lmheadmodel"): transformers.GPT2LMHeadModel,
    ("gpt2", "forsequenceclassification"): transformers.GPT2ForSequenceClassification,
    ("roberta", "model"): transformers.RobertaModel,
    ("roberta", "formaskedlm"): transformers.RobertaForMaskedLM,
    ("roberta", "forsequenceclassification"): transformers.RobertaForSequenceClassification,
    **{
        (family, task): getattr(transformers, prefix + suffix)
        for family, prefix in (("llama", "Llama"), ("mistral", "Mistral"), ("qwen2", "Qwen2"))
        for task, suffix in (("model", "Model"), ("forcausallm", "ForCausalLM"), ("forsequenceclassification", "ForSequenceClassification"))
    },
}
# Tiny Llama-family configs: grouped-query attention (4 query heads, 2 key/value heads), a head_dim
# that is not hidden / heads, biases, sliding windows shorter than SEQ, tied and untied heads, and
# a scaled RoPE type each (the padded row keeps a real token inside every window).
LLAMA_FAMILY = {
    "llama": dict(
        head_dim=6, attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 4},
    ),
    "mistral": dict(head_dim=6, sliding_window=4, tie_word_embeddings=False,
                    rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}),
    "qwen2": dict(use_sliding_window=True, sliding_window=4, max_window_layers=1, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                   "original_max_position_embeddings": 8}),
}


def hf_config(family: str, **overrides):
    sizes = dict(vocab_size=VOCAB, num_labels=3, pad_token_id=PAD)
    if family in LLAMA_FAMILY:
        entries = dict(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=24,
            max_position_embeddings=32, rms_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, **sizes,
        )
        config = transformers.AutoConfig.for_model(family, **{**entries, **LLAMA_FAMILY[family]})
    elif family == "gpt2":
        config = transformers.GPT2Config(
            n_embd=16, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0, **sizes
        )
    else:
        encoder = dict(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24, type_vocab_size=2, **sizes
        )
        if family == "bert":
            config = transformers.BertConfig(max_position_embeddings=32, **encoder)
        else:
            config = transformers.RobertaConfig(max_position_embeddings=34, bos_token_id=0, eos_token_id=2, **encoder)
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def make_model(family: str, task: str, **overrides):
    torch.manual_seed(0)
    model = HF_CLASSES[(family, task)](hf_config(family, **overrides)).eval()
    with torch.no_grad():  # non-zero biases and norms, so a misplaced one shows
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def our_config(model):
    entries = model.config.to_dict()
    return CONFIG_CLASSES[entries["model_type"]].from_dict(entries)


def state_dict_numpy(model):
    return {key: value.detach().numpy() for key, value in model.state_dict().items()}


def inputs(family: str, left_padding: bool = False):
    rng = np.random.default_rng(1)
    ids = rng.integers(3, VOCAB, size=(BATCH, SEQ))
    mask = np.ones((BATCH, SEQ), dtype=np.int64)
    padded = slice(0, 3) if left_padding else slice(SEQ - 3, SEQ)
    ids[1, padded], mask[1, padded] = PAD, 0
    types = rng.integers(0, 2, size=(BATCH, SEQ)) if family == "bert" else None
    return ids, mask, types


def torch_outputs(model, ids, mask, types):
    kwargs = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    if types is not None:
        kwargs["token_type_ids"] = torch.tensor(types)
    with torch.no_grad():
        return model(**kwargs)


def julia_layout(torch_array: torch.Tensor) -> np.ndarray:
    """torch (batch, ...) outputs as Julia returns them: every axis reversed."""
    return torch_array.detach().numpy().T


def reload_mismatches(model, directory) -> list:
    """What differs after transformers' from_pretrained(directory): loading problems, then every
    key whose bytes are not those of `model` (empty when the round trip is bit-exact)."""
    reloaded, info = type(model).from_pretrained(directory, output_loading_info=True)
    problems = [f"{kind}: {key}" for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") for key in info[kind]]
    original = model.state_dict()
    for key, value in reloaded.state_dict().items():
        if value.dtype != original[key].dtype or value.numpy().tobytes() != original[key].numpy().tobytes():
            problems.append(f"differs: {key}")
    return problems


def torch_lm_loss(model, ids: np.ndarray) -> float:
    """transformers' causal-LM loss with labels = input_ids."""
    with torch.no_grad():
        return float(model(input_ids=torch.tensor(ids), labels=torch.tensor(ids)).loss)


def output_names(family: str, task: str) -> list:
    """The fields the Flux model's NamedTuple and transformers' output share."""
    if task != "model" or family in LLAMA_FAMILY:
        return ["logits"] if task != "model" else ["last_hidden_state"]
    return ["last_hidden_state"] if family == "gpt2" else ["last_hidden_state", "pooler_output"]



def flux_arrays(state_dict: Mapping[str, np.ndarray], config, task: str) -> Dict[Path, np.ndarray]:
    """{Flux path: Julia-shaped array} as `julia/loading.jl` fills a model; tied fields share one array."""
    arrays = {weight.path: weight.array for weight in flux_weights(state_dict, config, task)}
    by_key = {entry.key: entry for entry in flux_table(config, task)}
    for entry in by_key.values():
        if entry.tied_to is not None:
            arrays[entry.path] = arrays[by_key[entry.tied_to].path]
    return arrays


def jl_reshape(array: np.ndarray, *shape: int) -> np.ndarray:
    """Julia's `reshape`: column-major."""
    return np.reshape(array, shape, order="F")


# ---- julia/layers.jl


def torch_layer_norm(w, path: Path, x: np.ndarray, eps: float) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    variance = (centred**2).mean(axis=0, keepdims=True)
    return centred / np.sqrt(variance + np.float32(eps)) * col(w[path + ("weight",)], x) + col(w[path + ("bias",)], x)


def col(vector: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A Julia vector broadcast against an N-d array: it runs along the first dimension."""
    return vector.reshape((-1,) + (1,) * (like.ndim - 1))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_erf(x):
    return (x * (1 + _erf(x.astype(np.float64) / math.sqrt(2))) / 2).astype(np.float32)


def gelu_tanh(x):
    return (x * (1 + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x**3))) / 2).astype(
        np.float32
    )


def silu(x):
    return x / (1 + np.exp(-x))


ACTIVATIONS = {"gelu_erf": gelu_erf, "gelu_tanh": gelu_tanh, "relu": lambda x: np.maximum(x, 0), "silu": silu, "tanh": np.tanh}


def dense(w, path: Path, x: np.ndarray) -> np.ndarray:
    """Flux `Dense` on an N-d input: reshape to (in, :), `W * x .+ b`, reshape back."""
    weight = w[path + ("weight",)]
    flat = jl_reshape(x, x.shape[0], -1)
    out = weight @ flat
    if path + ("bias",) in w:
        out = out + w[path + ("bias",)][:, None]
    return jl_reshape(out, out.shape[0], *x.shape[1:])


def embedding(w, path: Path, ids: np.ndarray) -> np.ndarray:
    """Flux `Embedding`: `NNlib.gather(weight, ids)`, 1-based ids -> (dim, size(ids)...)."""
    return w[path + ("weight",)][:, ids - 1]


def attention_bias(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, np.float32(0), -np.finfo(np.float32).max).astype(np.float32)


def padding_mask(attention_mask: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if attention_mask is None:
        return None
    return jl_reshape(attention_mask != 0, attention_mask.shape[0], 1, 1, attention_mask.shape[1])


def softmax_dim1(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=0, keepdims=True))
    return shifted / shifted.sum(axis=0, keepdims=True)


def multihead_attention(q, k, v, mask, nheads: int) -> np.ndarray:
    """`NNlib.dot_product_attention(q, k, v, bias; nheads)` on (features, seq, batch) arrays."""
    features, q_len, batch = q.shape
    head_dim = features // nheads
    split = lambda a: jl_reshape(a, head_dim, nheads, a.shape[1], batch)  # noqa: E731 (split_heads)
    qh, kh, vh = split(q), split(k), split(v)
    qh = qh / np.sqrt(np.float32(head_dim))
    scores = np.einsum("dhjb,dhib->jihb", kh, qh)  # logits[j, i, h, b]: key j, query i
    if mask is not None:
        scores = scores + attention_bias(mask)
    alpha = softmax_dim1(scores)
    out = np.einsum("jihb,dhjb->dhib", alpha, vh)  # x[d, h, i, b]
    return jl_reshape(out, features, q_len, batch)  # join_heads


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """julia/layers.jl `cross_entropy`: (classes, n) logits, 1-based targets."""
    shifted = logits - logits.max(axis=0, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=0, keepdims=True))
    return float(-logprobs[targets - 1, np.arange(len(targets))].mean())


# ---- julia/bert.jl


def encoder_model(w, hp, base: Path, ids, attention_mask=None, token_type_ids=None, pooler=True):
    """`(model::EncoderModel)(input_ids; attention_mask, token_type_ids)`."""
    emb = base + ("embeddings",)
    if hp["position_rule"] == "after_padding":
        pad_id = hp["pad_token_id"] + 1
        is_token = (ids != pad_id).astype(np.int64)
        positions = np.cumsum(is_token, axis=0) * is_token + pad_id
    else:
        positions = np.cumsum(np.ones_like(ids), axis=0)
    types = np.ones_like(ids) if token_type_ids is None else token_type_ids
    summed = (
        embedding(w, emb + ("word_embeddings",), ids)
        + embedding(w, emb + ("position_embeddings",), positions)
        + embedding(w, emb + ("token_type_embeddings",), types)
    )
    eps = hp["layer_norm_eps"]
    hidden = torch_layer_norm(w, emb + ("norm",), summed, eps)
    mask = padding_mask(attention_mask)
    activation = ACTIVATIONS[hp["activation"]]
    for index in range(1, hp["num_layers"] + 1):
        layer = base + ("layers", index)
        att = layer + ("attention",)
        heads = multihead_attention(
            dense(w, att + ("query",), hidden),
            dense(w, att + ("key",), hidden),
            dense(w, att + ("value",), hidden),
            mask,
            hp["num_heads"],
        )
        hidden = torch_layer_norm(w, layer + ("attention_norm",), hidden + dense(w, att + ("output",), heads), eps)
        feed_forward = dense(w, layer + ("output",), activation(dense(w, layer + ("intermediate",), hidden)))
        hidden = torch_layer_norm(w, layer + ("output_norm",), hidden + feed_forward, eps)
    pooled = np.tanh(dense(w, base + ("pooler",), hidden[:, 0, :])) if pooler else None
    return hidden, pooled


def masked_lm_head(w, hp, hidden, activation) -> np.ndarray:
    """`(head::MaskedLMHead)(hidden)`: (vocab, seq, batch) logits."""
    features = torch_layer_norm(w, ("head", "norm"), activation(dense(w, ("head", "dense"), hidden)), hp["layer_norm_eps"])
    flat = jl_reshape(features, features.shape[0], -1)
    logits = w[("head", "weight")].T @ flat + w[("head", "bias")][:, None]
    return jl_reshape(logits, logits.shape[0], *hidden.shape[1:])


# ---- julia/gpt2.jl


def gpt2_model(w, hp, base: Path, ids, attention_mask=None) -> np.ndarray:
    """`(model::GPT2Model)(input_ids; attention_mask)`."""
    positions = np.cumsum(np.ones_like(ids), axis=0)
    hidden = embedding(w, base + ("wte",), ids) + embedding(w, base + ("wpe",), positions)
    length = ids.shape[0]
    causal = np.triu(np.ones((length, length), dtype=bool))  # NNlib.make_causal_mask: m[i, j] = i <= j
    padding = padding_mask(attention_mask)
    mask = causal if padding is None else causal[:, :, None, None] & padding
    eps, size = hp["layer_norm_eps"], hp["hidden_size"]
    activation = ACTIVATIONS[hp["activation"]]
    for index in range(1, hp["num_layers"] + 1):
        block = base + ("layers", index)
        qkv = dense(w, block + ("attention", "c_attn"), torch_layer_norm(w, block + ("ln_1",), hidden, eps))
        heads = multihead_attention(qkv[:size], qkv[size : 2 * size], qkv[2 * size :], mask, hp["num_heads"])
        hidden = hidden + dense(w, block + ("attention", "c_proj"), heads)
        inner = activation(dense(w, block + ("mlp", "c_fc"), torch_layer_norm(w, block + ("ln_2",), hidden, eps)))
        hidden = hidden + dense(w, block + ("mlp", "c_proj"), inner)
    return torch_layer_norm(w, base + ("ln_f",), hidden, eps)


def last_token_indices(ids: np.ndarray, pad_id: int) -> np.ndarray:
    """julia/src/layers.jl `last_token_indices` (1-based)."""
    if pad_id == 0:
        return np.full(ids.shape[1], ids.shape[0])
    found = []
    for column in ids.T:
        positions = np.flatnonzero(column != pad_id)
        found.append(positions[-1] + 1 if len(positions) else 1)
    return np.array(found)


# ---- julia/src/llama.jl


def rms_norm(w, path: Path, x: np.ndarray, eps: float) -> np.ndarray:
    """`(norm::RMSNorm)(x)`: x ./ sqrt.(mean(x .^ 2; dims = 1) .+ eps) .* weight."""
    variance = (x**2).mean(axis=0, keepdims=True)
    return x / np.sqrt(variance + np.float32(eps)) * col(w[path + ("weight",)], x)


def rotary_tables(hp, positions: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """`rotary_tables(rotary, positions)`: cos and sin, (head_dim, seq, batch), from 0-based positions."""
    inv_freq = np.array(hp["rope_inv_freq"], dtype=np.float32)
    angles = inv_freq[:, None, None] * positions.astype(np.float32)[None]  # (head_dim / 2, seq, batch)
    scale = np.float32(hp["rope_scaling"])
    cos, sin = np.cos(angles) * scale, np.sin(angles) * scale
    return np.concatenate([cos, cos], axis=0), np.concatenate([sin, sin], axis=0)


def apply_rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, head_dim: int) -> np.ndarray:
    """`apply_rotary(x, cos, sin, head_dim)`: per head, x * cos + rotate_half(x) * sin."""
    features, seq, batch = x.shape
    heads = jl_reshape(x, head_dim, features // head_dim, seq, batch)
    half = head_dim // 2
    rotated = np.concatenate([-heads[half:], heads[:half]], axis=0)
    out = heads * cos[:, None] + rotated * sin[:, None]
    return jl_reshape(out, features, seq, batch)


def repeat_kv(x: np.ndarray, head_dim: int, groups: int) -> np.ndarray:
    """`repeat_kv(x, head_dim, groups)`: each key/value head repeated `groups` times in place
    (Julia: reshape to (head_dim, 1, kv_heads, :), repeat along dimension 2, reshape back)."""
    if groups == 1:
        return x
    features, seq, batch = x.shape
    split = jl_reshape(x, head_dim, 1, features // head_dim, seq * batch)
    repeated = np.concatenate([split] * groups, axis=1)
    return jl_reshape(repeated, features * groups, seq, batch)


def window_mask(length: int, window: Optional[int]) -> np.ndarray:
    """`decoder_mask(length, window)`: m[key, query] = key <= query and query - key < window."""
    keys, queries = np.arange(length)[:, None], np.arange(length)[None, :]
    mask = keys <= queries
    return mask if window is None else mask & (queries - keys < window)


def llama_model(w, hp, base: Path, ids, attention_mask=None) -> np.ndarray:
    """`(model::LlamaModel)(input_ids; attention_mask)`: positions 0, 1, ... whatever the padding."""
    hidden = embedding(w, base + ("embed_tokens",), ids)
    length = ids.shape[0]
    positions = np.cumsum(np.ones_like(ids), axis=0) - 1
    cos, sin = rotary_tables(hp, positions)
    padding = padding_mask(attention_mask)
    masks = {}
    for window in set(hp["sliding_windows"]):
        causal = window_mask(length, window)
        masks[window] = causal if padding is None else causal[:, :, None, None] & padding
    eps, head_dim, heads = hp["rms_norm_eps"], hp["head_dim"], hp["num_heads"]
    groups = heads // hp["num_key_value_heads"]
    activation = ACTIVATIONS[hp["activation"]]
    for index in range(1, hp["num_layers"] + 1):
        layer = base + ("layers", index)
        att = layer + ("self_attn",)
        normed = rms_norm(w, layer + ("input_layernorm",), hidden, eps)
        query = apply_rotary(dense(w, att + ("q_proj",), normed), cos, sin, head_dim)
        key = apply_rotary(dense(w, att + ("k_proj",), normed), cos, sin, head_dim)
        value = dense(w, att + ("v_proj",), normed)
        mask = masks[hp["sliding_windows"][index - 1]]
        attended = multihead_attention(query, repeat_kv(key, head_dim, groups), repeat_kv(value, head_dim, groups), mask, heads)
        hidden = hidden + dense(w, att + ("o_proj",), attended)
        normed = rms_norm(w, layer + ("post_attention_layernorm",), hidden, eps)
        mlp = layer + ("mlp",)
        gated = activation(dense(w, mlp + ("gate_proj",), normed)) * dense(w, mlp + ("up_proj",), normed)
        hidden = hidden + dense(w, mlp + ("down_proj",), gated)
    return rms_norm(w, base + ("norm",), hidden, eps)


def pick_last_tokens(scores: np.ndarray, ids: np.ndarray, pad_token_id) -> np.ndarray:
    """Each sequence's scores at its last non-padding token (GPT-2's and Llama's classifiers)."""
    pad_id = 0 if pad_token_id is None else pad_token_id + 1
    last = last_token_indices(ids, pad_id)
    return scores[:, last - 1, np.arange(ids.shape[1])]


# ---- every family and head


def lm_head_logits(w, hidden: np.ndarray) -> np.ndarray:
    """julia/src/layers.jl `LMHead`: (vocab, seq, batch) logits from the (hidden, seq, batch) states."""
    flat = jl_reshape(hidden, hidden.shape[0], -1)
    return jl_reshape(w[("lm_head", "weight")].T @ flat, -1, *hidden.shape[1:])


def flux_forward(w, config, task: str, ids, attention_mask=None, token_type_ids=None) -> Dict[str, np.ndarray]:
    """The NamedTuple the Julia model returns, as a dict of Julia-shaped arrays."""
    hp = flux_hyperparameters(config)
    family = hp["model_type"]
    if family == "gpt2" or family in LLAMA_FAMILY:
        # decoder body, the head's field for it, and the task name of the language-model head
        body, field, lm_task = ((gpt2_model, "transformer", "lmheadmodel") if family == "gpt2"
                                else (llama_model, "model", "forcausallm"))
        if task == "model":
            return {"last_hidden_state": body(w, hp, (), ids, attention_mask)}
        hidden = body(w, hp, (field,), ids, attention_mask)
        if task == lm_task:
            return {"logits": lm_head_logits(w, hidden)}
        return {"logits": pick_last_tokens(dense(w, ("score",), hidden), ids, hp["pad_token_id"])}
    kwargs = dict(attention_mask=attention_mask, token_type_ids=token_type_ids)
    if task == "model":
        hidden, pooled = encoder_model(w, hp, (), ids, **kwargs)
        return {"last_hidden_state": hidden, "pooler_output": pooled}
    base = (family,)
    if task == "formaskedlm":
        hidden, _ = encoder_model(w, hp, base, ids, pooler=False, **kwargs)
        activation = ACTIVATIONS[hp["activation"]] if family == "bert" else gelu_erf
        return {"logits": masked_lm_head(w, hp, hidden, activation)}
    if family == "bert":
        _, pooled = encoder_model(w, hp, base, ids, **kwargs)
        return {"logits": dense(w, ("classifier",), pooled)}
    hidden, _ = encoder_model(w, hp, base, ids, pooler=False, **kwargs)
    first = np.tanh(dense(w, ("classifier", "dense"), hidden[:, 0, :]))
    return {"logits": dense(w, ("classifier", "out_proj"), first)}
