# Tokenizers are Python's (bridge.tokenizer, identical to transformers'); these helpers turn their
# output into what the Flux models take: (seq, batch) column-major, 1-based ids.

"""
    load_tokenizer(source; revision = nothing)

The tokenizer of `source` (a local directory or a Hub repo id), a Python object from
`bridge.tokenizer.load_tokenizer`. Use `encode` and `decode` with it.
"""
load_tokenizer(source::AbstractString; revision = nothing) =
    python_module("bridge.tokenizer").load_tokenizer(source; revision = revision)

"""
    encode(tokenizer, texts; padding = length(texts) > 1, truncation = false, max_length = nothing)

Tokenize a vector of strings (or one string). Returns `(input_ids, attention_mask)` and, for
families that use them, `token_type_ids`: (seq, batch) matrices, ids 1-based, the mask Bool with
`true` for real tokens (NNlib's convention). Several texts are padded to one length (the
tokenizer needs a pad token: GPT-2's has none, so encode its texts one at a time); one text is not
padded.
"""
function encode(tokenizer::Py, texts::AbstractVector{<:AbstractString}; padding = length(texts) > 1, truncation = false, max_length = nothing)
    encoded = tokenizer(pylist(texts); padding = padding, truncation = truncation, max_length = max_length, return_tensors = "np")
    layout = flux_layout()
    input_ids = pyconvert(Matrix{Int}, layout.token_ids_to_flux(encoded["input_ids"]))
    attention_mask = pyconvert(Matrix{Bool}, layout.mask_to_flux(encoded["attention_mask"]))
    "token_type_ids" in encoded || return (input_ids = input_ids, attention_mask = attention_mask)
    token_type_ids = pyconvert(Matrix{Int}, layout.token_ids_to_flux(encoded["token_type_ids"]))
    return (input_ids = input_ids, attention_mask = attention_mask, token_type_ids = token_type_ids)
end

encode(tokenizer::Py, text::AbstractString; kwargs...) = encode(tokenizer, [text]; kwargs...)

"""
    decode(tokenizer, ids; skip_special_tokens = true)

The text of a vector of 1-based ids (one sequence), or a vector of texts for a (seq, batch) matrix.
"""
function decode(tokenizer::Py, ids::AbstractVector{<:Integer}; skip_special_tokens = true)
    zero_based = flux_layout().token_ids_from_flux(collect(ids))
    return pyconvert(String, tokenizer.decode(zero_based; skip_special_tokens = skip_special_tokens))
end

decode(tokenizer::Py, ids::AbstractMatrix{<:Integer}; kwargs...) = [decode(tokenizer, column; kwargs...) for column in eachcol(ids)]
