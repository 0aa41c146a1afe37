# Llama, Mistral and Qwen2: one pre-norm decoder with RMSNorm, rotary position embeddings,
# grouped-query attention and a SwiGLU MLP. The three families share these structs; what differs
# (biases, each layer's sliding window, the RoPE type) is decided in Python (bridge/llama_family.py,
# through bridge.flux_layout.flux_hyperparameters) and arrives as hyperparameters: the q/k/v/o and
# MLP Dense layers have a bias or not, a layer has a window or `nothing`, and the RoPE frequencies
# come precomputed, so Julia only multiplies them by positions. Field names are transformers'.
# Activations are (features, seq, batch); masks follow NNlib (true = attend).

"""
    RMSNorm(weight, eps)

Root-mean-square normalisation over the first dimension, as transformers' `LlamaRMSNorm`
computes it: `x / sqrt(mean(x^2) + eps) * weight` (no centring, no bias).
"""
struct RMSNorm{V<:AbstractVector,T<:AbstractFloat} <: HGFLayer
    weight::V
    eps::T
end

Flux.@layer RMSNorm trainable=(weight,)

RMSNorm(dim::Integer, eps::Real) = RMSNorm(ones(Float32, dim), Float32(eps))

function (norm::RMSNorm)(x::AbstractArray)
    variance = mean(x .^ 2; dims = 1)
    return x ./ sqrt.(variance .+ norm.eps) .* norm.weight
end

"""
    RotaryEmbedding(inv_freq, scaling)

The rotary embeddings' inverse frequencies (head_dim / 2 of them, computed in Python for the
config's RoPE type: default, linear, llama3 or yarn) and the factor cos and sin are scaled by
(YaRN's attention scale, else 1). Not trainable, and a leaf: moving the model to the GPU leaves it
alone, as the tables are built on the activations' device.
"""
struct RotaryEmbedding
    inv_freq::Vector{Float32}
    scaling::Float32
end

Functors.@leaf RotaryEmbedding

Base.show(io::IO, rotary::RotaryEmbedding) = print(io, "RotaryEmbedding(", length(rotary.inv_freq), " frequencies)")

"""
    rotary_tables(rotary, input_ids, like) -> (cos, sin)

cos and sin of position × frequency, each (head_dim, seq, batch) on `like`'s device, for
positions 0, 1, ... down each column of `input_ids` (transformers' default `position_ids`, whatever
the padding). Each table holds the frequencies twice, as `rotate_half` pairs dimension i with
i + head_dim / 2.
"""
function rotary_tables(rotary::RotaryEmbedding, input_ids::AbstractMatrix{<:Integer}, like::AbstractArray)
    T = eltype(like)
    inv_freq = copyto!(similar(like, length(rotary.inv_freq)), rotary.inv_freq)
    positions = T.(absolute_positions(input_ids) .- 1)
    angles = inv_freq .* reshape(positions, 1, size(positions)...)  # (head_dim / 2, seq, batch)
    cos_half, sin_half = cos.(angles) .* rotary.scaling, sin.(angles) .* rotary.scaling
    return vcat(cos_half, cos_half), vcat(sin_half, sin_half)
end

"""
    apply_rotary(x, cos_table, sin_table, head_dim)

Rotate each head of `x` ((heads * head_dim, seq, batch)) by its position: `x * cos +
rotate_half(x) * sin`, where `rotate_half` maps the halves (a, b) of a head to (-b, a).
"""
function apply_rotary(x::AbstractArray{<:Real,3}, cos_table, sin_table, head_dim::Integer)
    features, seq, batch = size(x)
    heads = reshape(x, head_dim, features ÷ head_dim, seq, batch)
    half = head_dim ÷ 2
    rotated = vcat(-heads[(half + 1):end, :, :, :], heads[1:half, :, :, :])
    c = reshape(cos_table, head_dim, 1, seq, batch)
    s = reshape(sin_table, head_dim, 1, seq, batch)
    return reshape(heads .* c .+ rotated .* s, features, seq, batch)
end

"""
    repeat_kv(x, head_dim, groups)

Grouped-query attention: each of the key/value heads of `x` ((kv_heads * head_dim, seq, batch))
repeated `groups` times in place, so that query head h reads key/value head (h - 1) ÷ groups + 1,
as transformers' `repeat_kv`.
"""
function repeat_kv(x::AbstractArray{<:Real,3}, head_dim::Integer, groups::Integer)
    groups == 1 && return x
    features, seq, batch = size(x)
    split = reshape(x, head_dim, 1, features ÷ head_dim, seq * batch)
    return reshape(repeat(split, 1, groups, 1, 1), features * groups, seq, batch)
end

"""
    decoder_mask(like, window) -> (seq, seq) Bool

`m[key, query]` is true when the key is not after the query and, with a sliding `window`, fewer
than `window` positions before it (transformers: key > query - window). On `like`'s device.
"""
function decoder_mask(like::AbstractArray, window::Union{Nothing,Integer})
    len = size(like, 2)
    keys, queries = 1:len, transpose(1:len)
    mask = keys .<= queries
    if window !== nothing
        mask = mask .& (queries .- keys .< window)
    end
    return copyto!(similar(like, Bool, len, len), Matrix{Bool}(mask))
end

"""
    layer_biases(layers, hidden, attention_mask)

Per layer, the additive attention bias of its mask (causal, its window, the padding): one per
distinct window, shared by the layers that use it.
"""
function layer_biases(layers, hidden, attention_mask)
    padding = padding_mask(attention_mask)
    by_window = Dict{Union{Nothing,Int},Any}()
    return map(layers) do layer
        get!(by_window, layer.sliding_window) do
            mask = decoder_mask(hidden, layer.sliding_window)
            attention_bias(padding === nothing ? mask : mask .& padding, eltype(hidden))
        end
    end
end

# Positions, masks and their biases are bookkeeping: no derivatives through them.
ChainRulesCore.@non_differentiable rotary_tables(::Any...)
ChainRulesCore.@non_differentiable decoder_mask(::Any...)
ChainRulesCore.@non_differentiable layer_biases(::Any...)

"Self-attention with rotary queries and keys and `nkv_heads` key/value heads shared by `nheads` query heads."
struct LlamaAttention{D,O,P} <: HGFLayer
    q_proj::D
    k_proj::D
    v_proj::D
    o_proj::O
    dropout::P
    nheads::Int
    nkv_heads::Int
    head_dim::Int
end

Flux.@layer LlamaAttention

function LlamaAttention(hp::AbstractDict)
    hidden, heads, kv_heads, head_dim, std = hp[:hidden_size], hp[:num_heads], hp[:num_key_value_heads], hp[:head_dim], hp[:initializer_range]
    heads % kv_heads == 0 || throw(ArgumentError("$heads attention heads are not a multiple of $kv_heads key/value heads"))
    bias = hp[:qkv_bias]
    return LlamaAttention(
        dense_layer(hidden, heads * head_dim, std; bias = bias),
        dense_layer(hidden, kv_heads * head_dim, std; bias = bias),
        dense_layer(hidden, kv_heads * head_dim, std; bias = bias),
        dense_layer(heads * head_dim, hidden, std; bias = hp[:output_bias]),
        Dropout(hp[:attention_dropout]),
        heads,
        kv_heads,
        head_dim,
    )
end

function (attention::LlamaAttention)(x, tables, bias)
    cos_table, sin_table = tables
    head_dim, groups = attention.head_dim, attention.nheads ÷ attention.nkv_heads
    query = apply_rotary(attention.q_proj(x), cos_table, sin_table, head_dim)
    key = repeat_kv(apply_rotary(attention.k_proj(x), cos_table, sin_table, head_dim), head_dim, groups)
    value = repeat_kv(attention.v_proj(x), head_dim, groups)
    return attention.o_proj(multihead_attention(query, key, value, bias, attention.nheads, attention.dropout))
end

"SwiGLU: down_proj(act(gate_proj(x)) .* up_proj(x)); the activation is `gate_proj`'s own."
struct LlamaMLP{G,D} <: HGFLayer
    gate_proj::G
    up_proj::D
    down_proj::D
end

Flux.@layer LlamaMLP

function LlamaMLP(hp::AbstractDict)
    hidden, inner, std, bias = hp[:hidden_size], hp[:intermediate_size], hp[:initializer_range], hp[:mlp_bias]
    return LlamaMLP(
        dense_layer(hidden, inner, std; bias = bias, activation = activation_function(hp[:activation])),
        dense_layer(hidden, inner, std; bias = bias),
        dense_layer(inner, hidden, std; bias = bias),
    )
end

(mlp::LlamaMLP)(x) = mlp.down_proj(mlp.gate_proj(x) .* mlp.up_proj(x))

"One pre-norm layer: x + self_attn(input_layernorm(x)), then + mlp(post_attention_layernorm(x))."
struct LlamaDecoderLayer{A,M,N} <: HGFLayer
    self_attn::A
    mlp::M
    input_layernorm::N
    post_attention_layernorm::N
    sliding_window::Union{Nothing,Int}
end

Flux.@layer LlamaDecoderLayer

LlamaDecoderLayer(hp::AbstractDict, window::Union{Nothing,Int}) = LlamaDecoderLayer(
    LlamaAttention(hp),
    LlamaMLP(hp),
    RMSNorm(hp[:hidden_size], hp[:rms_norm_eps]),
    RMSNorm(hp[:hidden_size], hp[:rms_norm_eps]),
    window,
)

function (layer::LlamaDecoderLayer)(x, tables, bias)
    x = x .+ layer.self_attn(layer.input_layernorm(x), tables, bias)
    return x .+ layer.mlp(layer.post_attention_layernorm(x))
end

"""
    LlamaModel

Token embeddings (`embed_tokens`), decoder layers, final `norm`; no position embeddings (the
rotary ones act inside attention). Serves Llama, Mistral and Qwen2 configs alike.
`(model)(input_ids; attention_mask = nothing)` returns `(last_hidden_state = (hidden, seq, batch),)`.
"""
struct LlamaModel{E,L,N,C} <: HGFPreTrainedModel
    embed_tokens::E
    layers::L
    norm::N
    rotary_emb::RotaryEmbedding
    config::C
end

Flux.@layer :expand LlamaModel

function LlamaModel(config::HGFConfig, hp::AbstractDict)
    hidden = hp[:hidden_size]
    windows = [pyconvert(Union{Nothing,Int}, window) for window in hp[:sliding_windows]]
    rotary = RotaryEmbedding(Float32[pyconvert(Float32, f) for f in hp[:rope_inv_freq]], Float32(hp[:rope_scaling]))
    return LlamaModel(
        embedding_layer(hp[:vocab_size], hidden, hp[:initializer_range]),
        [LlamaDecoderLayer(hp, window) for window in windows],
        RMSNorm(hidden, hp[:rms_norm_eps]),
        rotary,
        config,
    )
end

function (model::LlamaModel)(input_ids::AbstractMatrix{<:Integer}; attention_mask = nothing)
    hidden = model.embed_tokens(input_ids)
    tables = rotary_tables(model.rotary_emb, input_ids, hidden)
    biases = layer_biases(model.layers, hidden, attention_mask)
    for i in eachindex(model.layers)
        hidden = model.layers[i](hidden, tables, biases[i])
    end
    return (last_hidden_state = model.norm(hidden),)
end

"""
    LlamaForCausalLM

The decoder and its language-model head: logits (vocab, seq, batch). `lm_head.weight` is
(hidden, vocab); when the config ties word embeddings it is the `embed_tokens` array itself.
"""
struct LlamaForCausalLM{M,H,C} <: HGFPreTrainedModel
    model::M
    lm_head::H
    config::C
end

Flux.@layer :expand LlamaForCausalLM

function LlamaForCausalLM(config::HGFConfig, hp::AbstractDict)
    model = LlamaModel(config, hp)
    return LlamaForCausalLM(model, LMHead(output_embedding(hp, model.embed_tokens.weight)), config)
end

(model::LlamaForCausalLM)(input_ids; kwargs...) = (logits = model.lm_head(model.model(input_ids; kwargs...).last_hidden_state),)

"""
    LlamaForSequenceClassification

Scores every position (`score`, no bias) and keeps, per sequence, the last token that is not the
padding id (`pad_id`, 1-based; 0 when the config has none: then the last position, and, as in
transformers, a batch of more than one sequence is an error).
"""
struct LlamaForSequenceClassification{M,D,C} <: HGFPreTrainedModel
    model::M
    score::D
    pad_id::Int
    config::C
end

Flux.@layer :expand LlamaForSequenceClassification

function LlamaForSequenceClassification(config::HGFConfig, hp::AbstractDict)
    pad_id = padding_id(hp)
    score = dense_layer(hp[:hidden_size], hp[:num_labels], hp[:initializer_range]; bias = false)
    return LlamaForSequenceClassification(LlamaModel(config, hp), score, pad_id, config)
end

function (model::LlamaForSequenceClassification)(input_ids; kwargs...)
    scores = model.score(model.model(input_ids; kwargs...).last_hidden_state)
    return (logits = pick_last_tokens(scores, input_ids, model.pad_id),)
end

MODEL_TYPES[:llama] = Dict(:model => LlamaModel, :forcausallm => LlamaForCausalLM, :forsequenceclassification => LlamaForSequenceClassification)
MODEL_TYPES[:mistral] = Dict(:model => LlamaModel, :forcausallm => LlamaForCausalLM, :forsequenceclassification => LlamaForSequenceClassification)
MODEL_TYPES[:qwen2] = Dict(:model => LlamaModel, :forcausallm => LlamaForCausalLM, :forsequenceclassification => LlamaForSequenceClassification)
