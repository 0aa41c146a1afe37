"""What a Llama-family config (Llama, Mistral, Qwen2) means for the architecture, torch-free.

One implementation for the torch models (bridge.models.llama) and the Flux ones (handed over by
bridge.flux_layout): the head size, each layer's biases and sliding window, and the rotary
embeddings' inverse frequencies. The three families are one architecture with a few switches:

    family    q/k/v bias       o bias           MLP bias   sliding window
    llama     attention_bias   attention_bias   mlp_bias   none
    mistral   no               no               no         `sliding_window` on every layer (None: none)
    qwen2     yes              no               no         on the layers `layer_types` marks "sliding_attention"

RoPE frequencies are computed in NumPy float32 with transformers' formulas and order of operations
(modeling_rope_utils): "default", "linear" (positions divided by `factor`), "dynamic" (NTK: the
base grows with the sequence length past max_position_embeddings), "llama3" (Llama 3.1's smoothed
band scaling) and "yarn" (with its attention scale).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Tuple

import numpy as np

from bridge.errors import ConfigError

ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn")


def head_dim(config: Any) -> int:
    """The size of one attention head: `head_dim` when the config has one, else hidden / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def layer_switches(config: Any, layer_idx: int) -> Tuple[bool, bool, bool, Optional[int]]:
    """(q/k/v bias, output bias, MLP bias, sliding window or None) of layer `layer_idx`."""
    family = config.model_type
    if family == "qwen2":
        sliding = config.layer_types[layer_idx] == "sliding_attention"
        return True, False, False, config.sliding_window if sliding else None
    if family == "mistral":
        return False, False, False, config.sliding_window
    return bool(config.attention_bias), bool(config.attention_bias), bool(config.mlp_bias), None


def rope_frequencies(config: Any, seq_len: Optional[int] = None) -> Tuple[np.ndarray, float]:
    """(inverse frequencies, float32 (rotary dim / 2,), scale applied to cos and sin).

    `seq_len` matters only to "dynamic", which rescales for sequences longer than
    max_position_embeddings.
    """
    rope: Mapping[str, Any] = config.rope_parameters
    rope_type = rope.get("rope_type", "default")
    if rope_type not in ROPE_TYPES:
        raise ConfigError(f"RoPE type {rope_type!r} is not supported; supported: {', '.join(ROPE_TYPES)}")
    base = float(rope["rope_theta"])
    dim = int(head_dim(config) * rope.get("partial_rotary_factor", 1.0))
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)

    if rope_type == "dynamic":
        factor, max_positions = rope["factor"], config.max_position_embeddings
        if seq_len is None:  # at construction transformers computes the base in double precision
            base = base * ((factor * max_positions / max_positions) - (factor - 1)) ** (dim / (dim - 2))
        else:  # in the forward pass, from a tensor: in float32
            length = np.float32(max(seq_len, max_positions))
            growth = (np.float32(factor) * length / np.float32(max_positions)) - np.float32(factor - 1)
            base = np.float32(base) * growth ** np.float32(dim / (dim - 2))
    inv_freq = np.float32(1.0) / (np.float32(base) ** exponents)
    if rope_type == "linear":
        return inv_freq / np.float32(rope["factor"]), 1.0
    if rope_type == "llama3":
        return _llama3(inv_freq, rope), 1.0
    if rope_type == "yarn":
        return _yarn(config, rope, base, dim, exponents)
    return inv_freq, 1.0


def _llama3(inv_freq: np.ndarray, rope: Mapping[str, Any]) -> np.ndarray:
    """Long wavelengths divided by `factor`, short ones kept, the band between blended."""
    factor, low, high = (np.float32(rope[name]) for name in ("factor", "low_freq_factor", "high_freq_factor"))
    old_context = np.float32(rope["original_max_position_embeddings"])
    low_wavelength, high_wavelength = old_context / low, old_context / high
    wavelength = np.float32(2 * math.pi) / inv_freq
    scaled = np.where(wavelength > low_wavelength, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelength - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelength < high_wavelength) & ~(wavelength > low_wavelength)
    return np.where(is_medium, smoothed, scaled).astype(np.float32)


def _yarn(config: Any, rope: Mapping[str, Any], base: float, dim: int, exponents: np.ndarray) -> Tuple[np.ndarray, float]:
    """Interpolation for low frequencies, extrapolation for high ones, a linear ramp between, and
    an attention scale of 0.1 ln(factor) + 1 unless `attention_factor` says otherwise."""
    original = rope["original_max_position_embeddings"]
    factor = rope.get("factor") or config.max_position_embeddings / original

    def mscale(scale: float, weight: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * weight * math.log(scale) + 1.0

    attention_factor = rope.get("attention_factor")
    if attention_factor is None:
        if rope.get("mscale") and rope.get("mscale_all_dim"):
            attention_factor = float(mscale(factor, rope["mscale"]) / mscale(factor, rope["mscale_all_dim"]))
        else:
            attention_factor = mscale(factor)
    beta_fast, beta_slow = rope.get("beta_fast") or 32, rope.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rope.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # no zero-width ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low), 0, 1)
    position_frequencies = np.float32(base) ** exponents
    extrapolation = np.float32(1.0) / position_frequencies
    interpolation = np.float32(1.0) / (np.float32(factor) * position_frequencies)
    extrapolation_share = 1 - ramp
    inv_freq = interpolation * (1 - extrapolation_share) + extrapolation * extrapolation_share
    return inv_freq.astype(np.float32), float(attention_factor)
