# BERT and RoBERTa: one post-norm encoder, different position ids and heads. Field names follow
# bridge/flux_layout.py's tables, which map every Hugging Face key onto them; `hp` is the
# hyperparameter Dict that bridge.flux_layout.flux_hyperparameters derives from the config.

"""
    EncoderEmbeddings

Word + position + token-type embeddings, then LayerNorm and dropout. `position_rule` is
`:absolute` (BERT: positions 1, 2, ...) or `:after_padding` (RoBERTa, after fairseq: real tokens
are numbered from `pad_id + 1` on, padding keeps `pad_id`; ids are 1-based).
"""
struct EncoderEmbeddings{E,N,D} <: HGFLayer
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
    pad_id = padding_id(hp)
    return EncoderEmbeddings(
        embedding_layer(hp[:vocab_size], hp[:hidden_size], std),
        embedding_layer(hp[:max_positions], hp[:hidden_size], std),
        embedding_layer(hp[:type_vocab_size], hp[:hidden_size], std),
        TorchLayerNorm(hp[:hidden_size], hp[:layer_norm_eps]),
        Dropout(hp[:dropout]),
        Symbol(hp[:position_rule]),
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

"Self-attention with separate query, key and value projections, dropout on the attention probabilities, an output projection."
struct SelfAttention{D,P} <: HGFLayer
    query::D
    key::D
    value::D
    output::D
    dropout::P
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
        Dropout(hp[:attention_dropout]),
        hp[:num_heads],
    )
end

function (attention::SelfAttention)(x, bias)
    heads = multihead_attention(attention.query(x), attention.key(x), attention.value(x), bias, attention.nheads, attention.dropout)
    return attention.output(heads)
end

"One post-norm encoder layer: attention, add & norm, feed-forward (`intermediate` carries the activation), add & norm."
struct EncoderLayer{A,N,D,E,P} <: HGFLayer
    attention::A
    attention_norm::N
    intermediate::D
    output::E
    output_norm::N
    dropout::P
end

Flux.@layer EncoderLayer

function EncoderLayer(hp::AbstractDict)
    hidden, inner, std, eps = hp[:hidden_size], hp[:intermediate_size], hp[:initializer_range], hp[:layer_norm_eps]
    return EncoderLayer(
        SelfAttention(hp),
        TorchLayerNorm(hidden, eps),
        dense_layer(hidden, inner, std; activation = activation_function(hp[:activation])),
        dense_layer(inner, hidden, std),
        TorchLayerNorm(hidden, eps),
        Dropout(hp[:dropout]),
    )
end

function (layer::EncoderLayer)(x, bias)
    x = layer.attention_norm(x .+ layer.dropout(layer.attention(x, bias)))
    return layer.output_norm(x .+ layer.dropout(layer.output(layer.intermediate(x))))
end

"BERT's base model: embeddings, encoder layers and (optionally, `nothing` otherwise) the pooler, a Dense with tanh."
struct BertModel{E,L,P,C} <: HGFPreTrainedModel
    embeddings::E
    layers::L
    pooler::P
    config::C
end

"RoBERTa's base model: BERT's layout with RoBERTa's position ids."
struct RobertaModel{E,L,P,C} <: HGFPreTrainedModel
    embeddings::E
    layers::L
    pooler::P
    config::C
end

const EncoderModel = Union{BertModel,RobertaModel}

Flux.@layer :expand BertModel
Flux.@layer :expand RobertaModel

BertModel(config::HGFConfig, hp::AbstractDict; pooler::Bool = true) = build_encoder(BertModel, config, hp; pooler)
RobertaModel(config::HGFConfig, hp::AbstractDict; pooler::Bool = true) = build_encoder(RobertaModel, config, hp; pooler)

function build_encoder(Model::Type, config::HGFConfig, hp::AbstractDict; pooler::Bool)
    layers = [EncoderLayer(hp) for _ in 1:hp[:num_layers]]
    pooling = pooler ? dense_layer(hp[:hidden_size], hp[:hidden_size], hp[:initializer_range]; activation = tanh) : nothing
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
    bias = attention_bias(padding_mask(attention_mask), eltype(hidden))  # once, shared by every layer
    for layer in model.layers
        hidden = layer(hidden, bias)
    end
    pooled = model.pooler === nothing ? nothing : model.pooler(hidden[:, 1, :])
    return (last_hidden_state = hidden, pooler_output = pooled)
end

"""
    MaskedLMHead

Dense with the activation, LayerNorm, then scores against every vocabulary vector. `weight` is
(hidden, vocab): with tied embeddings it is the very array of the word embeddings.
"""
struct MaskedLMHead{D,N,W,B} <: HGFLayer
    dense::D
    norm::N
    weight::W
    bias::B
end

Flux.@layer MaskedLMHead

function MaskedLMHead(hp::AbstractDict, word_embeddings::AbstractMatrix, activation)
    hidden, std = hp[:hidden_size], hp[:initializer_range]
    return MaskedLMHead(
        dense_layer(hidden, hidden, std; activation = activation),
        TorchLayerNorm(hidden, hp[:layer_norm_eps]),
        output_embedding(hp, word_embeddings),
        zeros(Float32, hp[:vocab_size]),
    )
end

function (head::MaskedLMHead)(hidden)
    features = head.norm(head.dense(hidden))
    flat = reshape(features, size(features, 1), :)
    logits = transpose(head.weight) * flat .+ head.bias
    return reshape(logits, :, size(hidden)[2:end]...)
end

"""
    ClassificationHead

RoBERTa's classification head, as transformers' `RobertaClassificationHead`: the first token,
dropout, `dense` (with tanh), dropout again, then `out_proj`.
"""
struct ClassificationHead{D,E,P} <: HGFLayer
    dense::D
    out_proj::E
    dropout::P
end

Flux.@layer ClassificationHead

(head::ClassificationHead)(hidden) = head.out_proj(head.dropout(head.dense(head.dropout(hidden[:, 1, :]))))

"BERT with its masked-LM head; `(model)(input_ids; ...)` returns `(logits = (vocab, seq, batch),)`."
struct BertForMaskedLM{M,H,C} <: HGFPreTrainedModel
    bert::M
    head::H
    config::C
end

"RoBERTa with its masked-LM head (the head's activation is always erf GELU, as in transformers)."
struct RobertaForMaskedLM{M,H,C} <: HGFPreTrainedModel
    roberta::M
    head::H
    config::C
end

"BERT classifying the pooled first token after dropout; logits are (labels, batch)."
struct BertForSequenceClassification{M,P,D,C} <: HGFPreTrainedModel
    bert::M
    dropout::P
    classifier::D
    config::C
end

"RoBERTa classifying its first token through `ClassificationHead`; logits are (labels, batch)."
struct RobertaForSequenceClassification{M,D,C} <: HGFPreTrainedModel
    roberta::M
    classifier::D
    config::C
end

Flux.@layer :expand BertForMaskedLM
Flux.@layer :expand RobertaForMaskedLM
Flux.@layer :expand BertForSequenceClassification
Flux.@layer :expand RobertaForSequenceClassification

function BertForMaskedLM(config::HGFConfig, hp::AbstractDict)
    bert = BertModel(config, hp; pooler = false)
    head = MaskedLMHead(hp, bert.embeddings.word_embeddings.weight, activation_function(hp[:activation]))
    return BertForMaskedLM(bert, head, config)
end

function RobertaForMaskedLM(config::HGFConfig, hp::AbstractDict)
    roberta = RobertaModel(config, hp; pooler = false)
    return RobertaForMaskedLM(roberta, MaskedLMHead(hp, roberta.embeddings.word_embeddings.weight, gelu_erf), config)
end

function BertForSequenceClassification(config::HGFConfig, hp::AbstractDict)
    classifier = dense_layer(hp[:hidden_size], hp[:num_labels], hp[:initializer_range])
    return BertForSequenceClassification(BertModel(config, hp), Dropout(hp[:classifier_dropout]), classifier, config)
end

function RobertaForSequenceClassification(config::HGFConfig, hp::AbstractDict)
    hidden, std = hp[:hidden_size], hp[:initializer_range]
    head = ClassificationHead(
        dense_layer(hidden, hidden, std; activation = tanh),
        dense_layer(hidden, hp[:num_labels], std),
        Dropout(hp[:classifier_dropout]),
    )
    return RobertaForSequenceClassification(RobertaModel(config, hp; pooler = false), head, config)
end

(model::BertForMaskedLM)(input_ids; kwargs...) = (logits = model.head(model.bert(input_ids; kwargs...).last_hidden_state),)
(model::RobertaForMaskedLM)(input_ids; kwargs...) = (logits = model.head(model.roberta(input_ids; kwargs...).last_hidden_state),)
(model::BertForSequenceClassification)(input_ids; kwargs...) =
    (logits = model.classifier(model.dropout(model.bert(input_ids; kwargs...).pooler_output)),)
(model::RobertaForSequenceClassification)(input_ids; kwargs...) =
    (logits = model.classifier(model.roberta(input_ids; kwargs...).last_hidden_state),)

MODEL_TYPES[:bert] = Dict(:model => BertModel, :formaskedlm => BertForMaskedLM, :forsequenceclassification => BertForSequenceClassification)
MODEL_TYPES[:roberta] = Dict(
    :model => RobertaModel,
    :formaskedlm => RobertaForMaskedLM,
    :forsequenceclassification => RobertaForSequenceClassification,
)
