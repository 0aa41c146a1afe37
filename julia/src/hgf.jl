# The user-facing API: hgf"repo:item", load_config / load_model, save_config / save_model.
# Specs are parsed, files fetched and checkpoints read and written by the Python package (bridge.hgf,
# bridge.hub, bridge.models.checkpoint): one implementation of each, called through PythonCall.

"""
    load_config(source; revision = nothing) -> HGFConfig

The config.json of `source`, a local directory or a Hub repo id (fetched once, then offline from
the artifact store). Any model type loads, as in Python's `hgf`; only building a model needs one
the Flux side has.
"""
function load_config(source::AbstractString; revision = nothing)
    path = python_module("bridge.hub").fetch_file(source, "config.json"; revision = revision)
    return HGFConfig(python_module("bridge.config").load_config(path))
end

"""
    save_config(directory, config::HGFConfig)

Write `<directory>/config.json` (through bridge.config, atomically).
"""
function save_config(directory::AbstractString, config::HGFConfig)
    config.py.save_pretrained(directory)
    return directory
end

"""
    load_model(source, task = :model; revision = nothing, trainmode = false)

The Flux model of `task` (`:model`, `:formaskedlm`, `:lmheadmodel`, `:forsequenceclassification`)
holding the pretrained weights of `source` (a local directory or a Hub repo id). Weights come as
Float32 whatever the checkpoint's dtype (bf16 crosses as its bits). Checkpoint keys the model does
not use, and weights the checkpoint lacks (left newly initialised), are reported as warnings.

`trainmode = false` (the default, as in Transformers.jl) switches dropout off for inference; pass
`trainmode = true` to fine-tune (dropout then acts inside `Flux.gradient` only, Flux's automatic
mode; `Flux.trainmode!`/`Flux.testmode!` switch later). Move the model with `to_device(model, :cuda)`.
"""
function load_model(source::AbstractString, task::Symbol = :model; revision = nothing, trainmode::Bool = false)
    py_config, weights = flux_layout().read_for_flux(source, string(task); revision = revision)
    return model_from_weights(py_config, task, weights; trainmode = trainmode)
end

"""
    save_model(directory, model; format = :safetensors)

Write config.json and the weights (`:safetensors` -> model.safetensors, `:bin` -> pytorch_model.bin)
as transformers lays them out, so `from_pretrained(directory)` in Python (ours or transformers')
loads identical weights. Works for a model on the GPU too (arrays are copied to the CPU).
"""
function save_model(directory::AbstractString, model; format::Symbol = :safetensors)
    format in (:safetensors, :bin) || throw(ArgumentError("format must be :safetensors or :bin, got $(repr(format))"))
    arrays = pydict(flux_arrays(model))
    flux_layout().save_from_flux(directory, model.config.py, string(model_task(model)), arrays; format = string(format))
    return directory
end

"""
    hgf(spec) / hgf"spec"

Look up `"<repo_id>[@<revision>]:<item>"` or `"<local dir>:<item>"` (the grammar of Python's
`bridge.hgf`, which parses it): `config` -> `HGFConfig`, `tokenizer` -> the Python tokenizer (see
`encode`/`decode`), `model` or a task (`formaskedlm`, `lmheadmodel`, ...) -> a Flux model; no item
-> `(tokenizer, model)`.
"""
function hgf(spec::AbstractString)
    parsed = python_module("bridge.hgf").parse_spec(spec)
    source = pyconvert(String, parsed.source)
    revision = pyconvert(Union{Nothing,String}, parsed.revision)
    item = pyis(parsed.item, pybuiltins.None) ? nothing : Symbol(pyconvert(String, parsed.item))
    item === :config && return load_config(source; revision = revision)
    item === :tokenizer && return load_tokenizer(source; revision = revision)
    item === nothing && return (load_tokenizer(source; revision = revision), load_model(source; revision = revision))
    return load_model(source, item; revision = revision)
end

macro hgf_str(spec)
    return :(hgf($spec))
end

"""
    to_device(x, device::Symbol)

Move a model (or its inputs) to `:cpu` or `:cuda`. `:cuda` needs `using CUDA, cuDNN` and a
functional NVIDIA GPU; it is an error otherwise, never a silent stay on the CPU (Flux's `gpu`
falls back to the CPU with a warning only).
"""
function to_device(x, device::Symbol)
    device === :cpu && return cpu_device()(x)
    device === :cuda || throw(ArgumentError("device must be :cpu or :cuda, got $(repr(device))"))
    cuda = try
        gpu_device(; force = true)  # MLDataDevices: throws instead of falling back to the CPU
    catch err
        throw(ErrorException("device :cuda asked for, but no functional GPU backend is loaded ($(sprint(showerror, err))). \
                              Install and load CUDA.jl and cuDNN.jl (`using CUDA, cuDNN`) on a machine with an NVIDIA GPU."))
    end
    cuda isa CUDADevice || throw(ErrorException("device :cuda asked for, but the functional GPU backend is $(typeof(cuda)); use `gpu_device()` for it"))
    return cuda(x)
end

"""
    causal_lm_loss(logits, input_ids)

Next-token cross-entropy of (vocab, seq, batch) `logits` against 1-based `input_ids` (seq, batch):
position t predicts token t + 1, as transformers' `labels=input_ids`.
"""
function causal_lm_loss(logits::AbstractArray{<:Real,3}, input_ids::AbstractMatrix{<:Integer})
    predicted = reshape(logits[:, 1:(end - 1), :], size(logits, 1), :)
    return cross_entropy(predicted, vec(input_ids[2:end, :]))
end
