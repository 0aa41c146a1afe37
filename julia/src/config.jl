# A model's config as the Julia side holds it: the `bridge.config` object itself (one
# implementation reads and writes config files), read with Hugging Face's names and values.
# Any model type loads; the sizes the Flux constructors need are derived only when a model is built.

"""
    HGFConfig

A model's config.json, any model type. `config.hidden_size` and `config[:hidden_size]` read an
entry with Hugging Face's names and values (GPT-2's aliases work too: `config.n_embd`);
`config.py` is the `bridge.config` object. `propertynames(config)` lists the entries.
"""
struct HGFConfig
    py::Py
    HGFConfig(config_object) = new(Py(config_object))  # a bridge.config object, however it came
end

Functors.@leaf HGFConfig  # moving a model to the GPU leaves its config alone

function Base.getindex(config::HGFConfig, key::Symbol)
    py = getfield(config, :py)
    pyhasattr(py, string(key)) || throw(KeyError(key))
    return pyconvert(Any, pygetattr(py, string(key)))
end

Base.haskey(config::HGFConfig, key::Symbol) = pyhasattr(getfield(config, :py), string(key))
Base.getproperty(config::HGFConfig, name::Symbol) = name === :py ? getfield(config, :py) : config[name]

function Base.propertynames(config::HGFConfig, private::Bool = false)
    keys = pyconvert(Vector{String}, pybuiltins.list(getfield(config, :py).to_dict()))
    return (:py, Symbol.(keys)...)
end

"The model type as a Symbol (`:bert`, `:gpt2`, ...), the key of `get_model_type`."
model_type(config::HGFConfig) = Symbol(config[:model_type])

"""
    hyperparameters(config) -> Dict{Symbol,Any}

The sizes, names and flags the Flux constructors read, in one vocabulary for every family
(`bridge.flux_layout.flux_hyperparameters`); errors for a model type or option the Flux models lack.
"""
function hyperparameters(config::HGFConfig)
    entries = pyconvert(Dict{String,Any}, flux_layout().flux_hyperparameters(config.py))
    return Dict{Symbol,Any}(Symbol(key) => value for (key, value) in entries)
end

Base.show(io::IO, config::HGFConfig) = print(io, "HGFConfig(", repr(config[:model_type]), ")")
Base.show(io::IO, ::MIME"text/plain", config::HGFConfig) = print(io, "HGFConfig: ", pyrepr(String, config.py))
