# GPT-2: a pre-norm causal decoder. The query/key/value projection stays fused (`c_attn`), as in
# the checkpoint: its output rows are query, key, value, `hidden` rows each.

"Causal self-attention with GPT-2's fused query/key/value projection and dropout on the attention probabilities."
struct CausalSelfAttention{D,P} <: HGFLayer
    c_attn::D
    c_proj::D
    dropout::P
    nheads::Int
end

Flux.@layer CausalSelfAttention

function (attention::CausalSelfAttention)(x, bias)
    qkv = attention.c_attn(x)
    hidden = size(x, 1)
    query, key, value = qkv[1:hidden, :, :], qkv[(hidden + 1):(2hidden), :, :], qkv[(2hidden + 1):end, :, :]
    return attention.c_proj(multihead_attention(query, key, value, bias, attention.nheads, attention.dropout))
end

"GPT-2's feed-forward: c_fc (a Dense carrying the activation), then c_proj."
struct FeedForward{D,E} <: HGFLayer
    c_fc::D
    c_proj::E
end

Flux.@layer FeedForward

(mlp::FeedForward)(x) = mlp.c_proj(mlp.c_fc(x))

"One pre-norm block: x + attention(ln_1(x)), then + mlp(ln_2(x))."
struct DecoderBlock{N,A,M,P} <: HGFLayer
    ln_1::N
    attention::A
    ln_2::N
    mlp::M
    dropout::P
end

Flux.@layer DecoderBlock

function DecoderBlock(hp::AbstractDict)
    hidden, inner, std, eps = hp[:hidden_size], hp[:intermediate_size], hp[:initializer_range], hp[:layer_norm_eps]
    return DecoderBlock(
        TorchLayerNorm(hidden, eps),
        CausalSelfAttention(dense_layer(hidden, 3hidden, std), dense_layer(hidden, hidden, std), Dropout(hp[:attention_dropout]), hp[:num_heads]),
        TorchLayerNorm(hidden, eps),
        FeedForward(dense_layer(hidden, inner, std; activation = activation_function(hp[:activation])), dense_layer(inner, hidden, std)),
        Dropout(hp[:dropout]),
    )
end

function (block::DecoderBlock)(x, bias)
    x = x .+ block.dropout(block.attention(block.ln_1(x), bias))
    return x .+ block.dropout(block.mlp(block.ln_2(x)))
end

"""
    GPT2Model

Token (`wte`) and position (`wpe`) embeddings, decoder blocks, final norm `ln_f`.
`(model)(input_ids; attention_mask = nothing)` returns `(last_hidden_state = (hidden, seq, batch),)`;
positions count 1, 2, ... whatever the padding, as in transformers.
"""
struct GPT2Model{E,L,N,P,C} <: HGFPreTrainedModel
    wte::E
    wpe::E
    layers::L
    ln_f::N
    dropout::P
    config::C
end

Flux.@layer :expand GPT2Model

function GPT2Model(config::HGFConfig, hp::AbstractDict)
    hidden, std = hp[:hidden_size], hp[:initializer_range]
    return GPT2Model(
        embedding_layer(hp[:vocab_size], hidden, std),
        embedding_layer(hp[:max_positions], hidden, std),
        [DecoderBlock(hp) for _ in 1:hp[:num_layers]],
        TorchLayerNorm(hidden, hp[:layer_norm_eps]),
        Dropout(hp[:embedding_dropout]),
        config,
    )
end

function (model::GPT2Model)(input_ids::AbstractMatrix{<:Integer}; attention_mask = nothing)
    hidden = model.wte(input_ids) .+ model.wpe(absolute_positions(input_ids))
    hidden = model.dropout(hidden)
    causal = NNlib.make_causal_mask(hidden)  # (key, query): true where key <= query
    padding = padding_mask(attention_mask)
    bias = attention_bias(padding === nothing ? causal : causal .& padding, eltype(hidden))  # once, for every block
    for block in model.layers
        hidden = block(hidden, bias)
    end
    return (last_hidden_state = model.ln_f(hidden),)
end

"GPT-2 with its language-model head; logits are (vocab, seq, batch)."
struct GPT2LMHeadModel{T,H,C} <: HGFPreTrainedModel
    transformer::T
    lm_head::H
    config::C
end

Flux.@layer :expand GPT2LMHeadModel

function GPT2LMHeadModel(config::HGFConfig, hp::AbstractDict)
    transformer = GPT2Model(config, hp)
    return GPT2LMHeadModel(transformer, LMHead(output_embedding(hp, transformer.wte.weight)), config)
end

(model::GPT2LMHeadModel)(input_ids; kwargs...) = (logits = model.lm_head(model.transformer(input_ids; kwargs...).last_hidden_state),)

"""
    GPT2ForSequenceClassification

Scores every position (`score`, no bias) and keeps, per sequence, the last token that is not the
padding id (`pad_id`, 1-based; 0 when the config has none: then the last position, and, as in
transformers, a batch of more than one sequence is an error).
"""
struct GPT2ForSequenceClassification{T,D,C} <: HGFPreTrainedModel
    transformer::T
    score::D
    pad_id::Int
    config::C
end

Flux.@layer :expand GPT2ForSequenceClassification

function GPT2ForSequenceClassification(config::HGFConfig, hp::AbstractDict)
    pad_id = padding_id(hp)
    score = dense_layer(hp[:hidden_size], hp[:num_labels], hp[:initializer_range]; bias = false)
    return GPT2ForSequenceClassification(GPT2Model(config, hp), score, pad_id, config)
end

function (model::GPT2ForSequenceClassification)(input_ids; kwargs...)
    scores = model.score(model.transformer(input_ids; kwargs...).last_hidden_state)  # (labels, seq, batch)
    return (logits = pick_last_tokens(scores, input_ids, model.pad_id),)
end

MODEL_TYPES[:gpt2] = Dict(:model => GPT2Model, :lmheadmodel => GPT2LMHeadModel, :forsequenceclassification => GPT2ForSequenceClassification)
