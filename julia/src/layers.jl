# Building blocks shared by every family: a LayerNorm and GELUs with torch's exact formulas, the
# attention call, fresh-weight constructors. Activations are (features, seq, batch) throughout.

"""
    TorchLayerNorm(weight, bias, eps)

Layer normalisation over the first dimension, computed as `torch.nn.LayerNorm` does:
`(x - mean) / sqrt(var + eps) * weight + bias` with the biased variance. Written out because
`Flux.LayerNorm` placed `eps` differently across Flux versions.
"""
struct TorchLayerNorm{V<:AbstractVector,T<:AbstractFloat} <: HGFLayer
    weight::V
    bias::V
    eps::T
end

Flux.@layer TorchLayerNorm trainable=(weight, bias)

TorchLayerNorm(dim::Integer, eps::Real) = TorchLayerNorm(ones(Float32, dim), zeros(Float32, dim), Float32(eps))

Base.show(io::IO, norm::TorchLayerNorm) = print(io, "TorchLayerNorm(", length(norm.weight), "; eps = ", norm.eps, ")")

function (norm::TorchLayerNorm)(x::AbstractArray)
    centred = x .- mean(x; dims = 1)
    variance = mean(centred .^ 2; dims = 1)
    return centred ./ sqrt.(variance .+ norm.eps) .* norm.weight .+ norm.bias
end

"GELU with the error function: torch's `gelu` and Hugging Face's \"gelu\"."
gelu_erf(x::Real) = x * (1 + erf(x / sqrt(oftype(x, 2)))) / 2

"GELU's tanh approximation: torch's `gelu(approximate=\"tanh\")`, Hugging Face's \"gelu_new\"."
gelu_tanh(x::Real) = x * (1 + tanh(sqrt(oftype(x, 2 / π)) * (x + oftype(x, 0.044715) * x^3))) / 2

"SiLU (swish) as torch computes it: `x * sigmoid(x)`."
silu(x::Real) = x / (1 + exp(-x))

"The activation function named by `bridge.flux_layout.flux_hyperparameters`."
function activation_function(name::AbstractString)
    functions = Dict("gelu_erf" => gelu_erf, "gelu_tanh" => gelu_tanh, "relu" => relu, "silu" => silu, "tanh" => tanh)
    haskey(functions, name) || throw(ArgumentError("unknown activation $(repr(name)); expected one of $(join(keys(functions), ", "))"))
    return functions[name]
end

"""
    attention_bias(mask)

Additive attention scores from a boolean mask in NNlib's convention (`true` = attend), broadcastable
to `(kv_len, q_len, heads, batch)`. Masked scores get `-floatmax` rather than NNlib's `-Inf`, as
transformers does: a query that may attend to nothing then averages instead of producing NaN
(which would reach every other position through the next layer's values).
"""
attention_bias(mask::AbstractArray{Bool}, T::Type{<:AbstractFloat} = Float32) = ifelse.(mask, zero(T), -floatmax(T))
attention_bias(::Nothing, ::Type = Float32) = nothing

"""
    padding_mask(attention_mask)

`(kv_len, 1, 1, batch)` booleans from a `(seq, batch)` 0/1 (or Bool) attention mask; `nothing`
means every position is a real token.
"""
padding_mask(attention_mask::Nothing) = nothing
padding_mask(attention_mask::AbstractMatrix) = reshape(attention_mask .!= 0, size(attention_mask, 1), 1, 1, size(attention_mask, 2))

"""
    absolute_positions(input_ids)

Positions 1, 2, ... down each column of (seq, batch) ids, on the ids' device.
"""
absolute_positions(input_ids::AbstractMatrix{<:Integer}) = cumsum(one.(input_ids); dims = 1)

# Masks, biases and positions are integer or boolean bookkeeping: no derivatives through them.
ChainRulesCore.@non_differentiable attention_bias(::Any...)
ChainRulesCore.@non_differentiable padding_mask(::Any)
ChainRulesCore.@non_differentiable absolute_positions(::Any)

"""
    multihead_attention(query, key, value, bias, nheads, dropout)

Multi-head scaled dot-product attention of (features, seq, batch) arrays, scores scaled by
1/sqrt(head_dim), `bias` from `attention_bias` (or `nothing`), `dropout` (a Flux `Dropout`) applied
to the attention probabilities: active only in training, as every Flux `Dropout` is.
"""
function multihead_attention(query, key, value, bias, nheads::Integer, dropout)
    output, _ = NNlib.dot_product_attention(query, key, value, bias; nheads = nheads, fdrop = dropout)
    return output
end

"""
    dense_layer(in, out, std; bias = true, activation = identity)

A Flux `Dense(W, b, activation)` initialised as Hugging Face initialises nn.Linear: N(0, std)
weights, zero bias. The activation is the Dense's own, as it follows the projection.
"""
dense_layer(in::Integer, out::Integer, std::Real; bias::Bool = true, activation = identity) =
    Dense(randn(Float32, out, in) .* Float32(std), bias ? zeros(Float32, out) : false, activation)

"""
    output_embedding(hp, word_embeddings)

The (hidden, vocab) matrix a language-model head scores against: the word-embedding array itself
when the config ties them (one array, two fields), else a fresh N(0, initializer_range) matrix.
"""
output_embedding(hp::AbstractDict, word_embeddings::AbstractMatrix) =
    hp[:tie_word_embeddings] ? word_embeddings : randn(Float32, size(word_embeddings)) .* Float32(hp[:initializer_range])

"A Flux Embedding with N(0, std) vectors, stored (dim, vocab)."
embedding_layer(vocab::Integer, dim::Integer, std::Real) = Embedding(randn(Float32, dim, vocab) .* Float32(std))

"""
    cross_entropy(logits, targets)

Mean cross-entropy of `(classes, n)` logits against `n` 1-based integer targets (torch's
`cross_entropy` with mean reduction).
"""
function cross_entropy(logits::AbstractMatrix, targets::AbstractVector{<:Integer})
    is_target = reshape(targets, 1, :) .== (1:size(logits, 1))
    return -sum(NNlib.logsoftmax(logits; dims = 1) .* is_target) / length(targets)
end

"The config's padding token as a 1-based id, or 0 when it names none."
padding_id(hp::AbstractDict) = hp[:pad_token_id] === nothing ? 0 : hp[:pad_token_id] + 1

"""
Per sequence, the index of the last token that is not `pad_id` (1 when all are padding). Without
a padding id (`pad_id` 0) it is the last position, and a batch of more than one sequence is an
ArgumentError, as in transformers.
"""
function last_token_indices(input_ids::AbstractMatrix{<:Integer}, pad_id::Integer)
    ids = Array(input_ids)
    pad_id == 0 && size(ids, 2) > 1 &&
        throw(ArgumentError("Cannot handle batch sizes > 1 if no padding token is defined (the config's pad_token_id is nothing), as in transformers"))
    pad_id == 0 && return fill(size(ids, 1), size(ids, 2))
    return [something(findlast(!=(pad_id), view(ids, :, b)), 1) for b in axes(ids, 2)]
end

"""
    pick_last_tokens(scores, input_ids, pad_id) -> (labels, batch)

Each sequence's column of `scores` ((labels, seq, batch)) at its last token that is not `pad_id`,
by a 0/1 selector on the scores' device (exact: x * 1 + zeros).
"""
function pick_last_tokens(scores::AbstractArray{<:Real,3}, input_ids::AbstractMatrix{<:Integer}, pad_id::Integer)
    selector = ChainRulesCore.ignore_derivatives() do
        last = last_token_indices(input_ids, pad_id)
        chosen = eltype(scores).((1:size(scores, 2)) .== reshape(last, 1, :))
        copyto!(similar(scores, size(chosen)), chosen)
    end
    return dropdims(sum(scores .* reshape(selector, 1, size(selector)...); dims = 2); dims = 2)
end

"Scores against every vocabulary vector; `weight` is (hidden, vocab), tied: the word-embedding array itself
(GPT-2's `wte`, Llama's `embed_tokens`)."
struct LMHead{W} <: HGFLayer
    weight::W
end

Flux.@layer LMHead

function (head::LMHead)(hidden)
    logits = transpose(head.weight) * reshape(hidden, size(hidden, 1), :)
    return reshape(logits, :, size(hidden)[2:end]...)
end
