# BERT and RoBERTa: one post-norm encoder, different position ids and heads. Field names follow
# bridge/flux_layout.py's tables, which map every Hugging Face key onto them.

"""
    EncoderEmbeddings

Word + position + token-type embeddings, then LayerNorm and dropout. `position_rule` is
`:absolute` (BERT: positions 1, 2, ...) or `:after_padding` (RoBERTa, after fairseq: real tokens
are numbered from `pad_id + 1` on, padding keeps `pad_id`; ids are 1-based).
"""
struct EncoderEmbeddings{E,N,D}
    word_embeddings::E
    position_embeddings::E
    token_type_embeddings::E
    norm::N
    dropout::D
    position_rule::Symbol
    pad_id::Int
end

Flux.@layer EncoderEmbeddings

function EncoderEmbeddings(hp::AbstractDict)
    std = hp[:initializer_range]
    rule = Symbol(hp[:position_rule])
    pad_id = hp[:pad_token_id] === nothing ? 0 : hp[:pad_token_id] + 1
    return EncoderEmbeddings(
        embedding_layer(hp[:vocab_size], hp[:hidden_size], std),
        embedding_layer(hp[:max_positions], hp[:hidden_size], std),
        embedding_layer(hp[:type_vocab_size], hp[:hidden_size], std),
        TorchLayerNorm(hp[:hidden_size], hp[:layer_norm_eps]),
        Dropout(hp[:dropout]),
        rule,
        pad_id,
    )
end

function position_ids(embeddings::EncoderEmbeddings, input_ids::AbstractMatrix{<:Integer})
    embeddings.position_rule === :after_padding || return absolute_positions(input_ids)
    is_token = input_ids .!= embeddings.pad_id
    return cumsum(is_token; dims = 1) .* is_token .+ embeddings.pad_id
end

"Token types default to the first type (1-based: 1) everywhere."
default_token_types(input_ids::AbstractMatrix{<:Integer}) = one.(input_ids)

ChainRulesCore.@non_differentiable position_ids(::Any, ::Any)
ChainRulesCore.@non_differentiable default_token_types(::Any)

function (embeddings::EncoderEmbeddings)(input_ids, token_type_ids)
    token_types = token_type_ids === nothing ? default_token_types(input_ids) : token_type_ids
    summed = embeddings.word_embeddings(input_ids) .+
             embeddings.position_embeddings(position_ids(embeddings, input_ids)) .+
             embeddings.token_type_embeddings(token_types)
    return embeddings.dropout(embeddings.norm(summed))
end

"Self-attention with separate query, key and value projections and an output projection."
struct SelfAttention{D}
    query::D
    key::D
    value::D
    output::D
    nheads::Int
end

Flux.@layer SelfAttention

function SelfAttention(hp::AbstractDict)
    hidden, std = hp[:hidden_size], hp[:initializer_range]
    return SelfAttention(
        dense_layer(hidden, hidden, std),
        dense_layer(hidden, hidden, std),
        dense_layer(hidden, hidden, std),
        dense_layer(hidden, hidden, std),
        hp[:num_heads],
    )
end

(attention::SelfAttention)(x, mask) =
    attention.output(multihead_attention(attention.query(x), attention.key(x), attention.value(x), mask, attention.nheads))

"One post-norm encoder layer: attention, add & norm, feed-forward, add & norm."
struct EncoderLayer{A,N,D,F,P}
    attention::A
    attention_norm::N
    intermediate::D
    output::D
    output_norm::N
    activation::F
    dropout::P
end

Flux.@layer EncoderLayer

function EncoderLayer(hp::AbstractDict)
    hidden, inner, std, eps = hp[:hidden_size], hp[:intermediate_size], hp[:initializer_range], hp[:layer_norm_eps]
    return EncoderLayer(
        SelfAttention(hp),
        TorchLayerNorm(hidden, eps),
        dense_layer(hidden, inner, std),
        dense_layer(inner, hidden, std),
        TorchLayerNorm(hidden, eps),
        activation_function(hp[:activation]),
        Dropout(hp[:dropout]),
    )
end

function (layer::EncoderLayer)(x, mask)
    x = layer.attention_norm(x .+ layer.dropout(layer.attention(x, mask)))
    feed_forward = layer.output(layer.activation.(layer.intermediate(x)))
    return layer.output_norm(x .+ layer.dropout(feed_forward))
end

"BERT's base model: embeddings, encoder layers and (optionally, `nothing` otherwise) the tanh pooler."
struct BertModel{E,L,P,C}
    embeddings::E
    layers::L
    pooler::P
    config::C
end

"RoBERTa's base model: BERT's layout with RoBERTa's position ids."
struct RobertaModel{E,L,P,C}
    embeddings::E
    layers::L
    pooler::P
    config::C
end

const EncoderModel = Union{BertModel,RobertaModel}

Flux.@layer :expand BertModel
Flux.@layer :expand RobertaModel

BertModel(config::HGFConfig) = build_encoder(BertModel, config)
RobertaModel(config::HGFConfig) = build_encoder(RobertaModel, config)

function build_encoder(Model::Type, config::HGFConfig; pooler::Bool = true)
    hp = config.hyperparameters
    layers = [EncoderLayer(hp) for _ in 1:hp[:num_layers]]
    pooling = pooler ? dense_layer(hp[:hidden_size], hp[:hidden_size], hp[:initializer_range]) : nothing
    return Model(EncoderEmbeddings(hp), layers, pooling, config)
end

"""
    (model::BertModel)(input_ids; attention_mask = nothing, token_type_ids = nothing)

`input_ids` are 1-based token ids of size (seq, batch); `attention_mask` (seq, batch) is 1 (or
true) for real tokens; `token_type_ids` are 1-based. Returns `(last_hidden_state, pooler_output)`
of sizes (hidden, seq, batch) and (hidden, batch) (`nothing` without a pooler).
"""
function (model::EncoderModel)(input_ids::AbstractMatrix{<:Integer}; attention_mask = nothing, token_type_ids = nothing)
    hidden = model.embeddings(input_ids, token_type_ids)
    mask = padding_mask(attention_mask)
    for layer in model.layers
        hidden = layer(hidden, mask)
    end
    pooled = model.pooler === nothing ? nothing : tanh.(model.pooler(hidden[:, 1, :]))
    return (last_hidden_state = hidden, pooler_output = pooled)
end

"""
    MaskedLMHead

Dense, activation, LayerNorm, then scores against every vocabulary vector. `weight` is
(hidden, vocab): with tied embeddings it is the very array of the word embeddings.
"""
struct MaskedLMHead{D,F,N,W,B}
    dense::D
    activation::F
    norm::N
    weight::W
    bias::B
end

Flux.@layer MaskedLMHead

function MaskedLMHead(hp::AbstractDict, word_embeddings::AbstractMatrix, activation)
    hidden, std = hp[:hidden_size], hp[:initializer_range]
    return MaskedLMHead(
        dense_layer(hidden, hidden, std),
        activation,
        TorchLayerNorm(hidden, hp[:layer_norm_eps]),
        output_embedding(hp, word_embeddings),
        zeros(Float32, hp[:vocab_size]),
    )
end

function (head::MaskedLMHead)(hidden)
    features = head.norm(head.activation.(head.dense(hidden)))
    flat = reshape(features, size(features, 1), :)
    logits = transpose(head.weight) * flat .+ head.bias
    return reshape(logits, :, size(hidden)[2:end]...)
end

"RoBERTa's classification head: the first token through dense, tanh and an output projection."
struct ClassificationHead{D}
    dense::D
    out_proj::D
end

Flux.@layer ClassificationHead

(head::ClassificationHead)(hidden) = head.out_proj(tanh.(head.dense(hidden[:, 1, :])))

"BERT with its masked-LM head; `(model)(input_ids; ...)` returns `(logits = (vocab, seq, batch),)`."
struct BertForMaskedLM{M,H,C}
    bert::M
    head::H
    config::C
end

"RoBERTa with its masked-LM head (the head's activation is always erf GELU, as in transformers)."
struct RobertaForMaskedLM{M,H,C}
    roberta::M
    head::H
    config::C
end

"BERT classifying the pooled first token; logits are (labels, batch)."
struct BertForSequenceClassification{M,D,C}
    bert::M
    classifier::D
    config::C
end

"RoBERTa classifying its first token through `ClassificationHead`; logits are (labels, batch)."
struct RobertaForSequenceClassification{M,D,C}
    roberta::M
    classifier::D
    config::C
end

Flux.@layer :expand BertForMaskedLM
Flux.@layer :expand RobertaForMaskedLM
Flux.@layer :expand BertForSequenceClassification
Flux.@layer :expand RobertaForSequenceClassification

function BertForMaskedLM(config::HGFConfig)
    bert = build_encoder(BertModel, config; pooler = false)
    activation = activation_function(config.hyperparameters[:activation])
    return BertForMaskedLM(bert, MaskedLMHead(config.hyperparameters, bert.embeddings.word_embeddings.weight, activation), config)
end

function RobertaForMaskedLM(config::HGFConfig)
    roberta = build_encoder(RobertaModel, config; pooler = false)
    return RobertaForMaskedLM(roberta, MaskedLMHead(config.hyperparameters, roberta.embeddings.word_embeddings.weight, gelu_erf), config)
end

function BertForSequenceClassification(config::HGFConfig)
    hp = config.hyperparameters
    classifier = dense_layer(hp[:hidden_size], hp[:num_labels], hp[:initializer_range])
    return BertForSequenceClassification(build_encoder(BertModel, config), classifier, config)
end

function RobertaForSequenceClassification(config::HGFConfig)
    hp = config.hyperparameters
    hidden, std = hp[:hidden_size], hp[:initializer_range]
    head = ClassificationHead(dense_layer(hidden, hidden, std), dense_layer(hidden, hp[:num_labels], std))
    return RobertaForSequenceClassification(build_encoder(RobertaModel, config; pooler = false), head, config)
end

(model::BertForMaskedLM)(input_ids; kwargs...) = (logits = model.head(model.bert(input_ids; kwargs...).last_hidden_state),)
(model::RobertaForMaskedLM)(input_ids; kwargs...) = (logits = model.head(model.roberta(input_ids; kwargs...).last_hidden_state),)
(model::BertForSequenceClassification)(input_ids; kwargs...) = (logits = model.classifier(model.bert(input_ids; kwargs...).pooler_output),)
(model::RobertaForSequenceClassification)(input_ids; kwargs...) =
    (logits = model.classifier(model.roberta(input_ids; kwargs...).last_hidden_state),)
