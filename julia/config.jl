# A model's config as the Julia side holds it. Config files are read and written by Python's
# bridge.config (one implementation); Julia keeps that object plus the normalised sizes and names
# that bridge.flux_layout derives from it for the Flux constructors.

"""
    HGFConfig

A model's config.json: `py` is the `bridge.config` object (the one implementation that reads and
writes config files), `hyperparameters` the sizes and names the Flux constructors read
(`bridge.flux_layout.flux_hyperparameters`). `config[:hidden_size]` reads an entry of either.
"""
struct HGFConfig
    py::Py
    model_type::Symbol
    hyperparameters::Dict{Symbol,Any}
end

Functors.@leaf HGFConfig  # moving a model to the GPU leaves its config alone

function HGFConfig(config_object)
    py_config = Py(config_object)  # a bridge.config object, however juliacall handed it over
    hyperparameters = pyconvert(Dict{String,Any}, flux_layout().flux_hyperparameters(py_config))
    hp = Dict{Symbol,Any}(Symbol(key) => value for (key, value) in hyperparameters)
    return HGFConfig(py_config, Symbol(hp[:model_type]), hp)
end

function Base.getindex(config::HGFConfig, key::Symbol)
    haskey(config.hyperparameters, key) && return config.hyperparameters[key]
    return pyconvert(Any, pygetattr(config.py, string(key)))
end

Base.show(io::IO, config::HGFConfig) = print(io, "HGFConfig(", pyrepr(String, config.py), ")")

"The Python module `bridge.flux_layout`, imported on first use."
flux_layout() = pyimport("bridge.flux_layout")
