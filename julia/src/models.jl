# What every family shares: the supertype of the models a user loads, the registry of model types
# and tasks that the generic loader reads, and how a model prints. A family file defines its
# structs and forward passes, then registers its tasks in `MODEL_TYPES`.

"The supertype of every model `load_model` returns (base models and heads); each has a `config::HGFConfig`."
abstract type HGFPreTrainedModel end

"""
    MODEL_TYPES

For each model type, its tasks (as Python's `bridge.flux_layout` names them) and Flux types. Each
family file adds its own entry.
"""
const MODEL_TYPES = Dict{Symbol,Dict{Symbol,Type}}()

"The supertype of the building blocks inside the models (attention, layers, heads)."
abstract type HGFLayer end

# print(model), "$model", Python's str(jl_model), a layer inside a Vector: one line, never the
# weights (Base's default would print every array). The REPL's multi-line view is Flux's
# (`Flux.@layer`), which prints sizes and parameter counts.
Base.show(io::IO, model::HGFPreTrainedModel) = print(io, nameof(typeof(model)), "(", model.config, ")")

function Base.show(io::IO, layer::HGFLayer)
    print(io, nameof(typeof(layer)), "(")
    join(io, (field_summary(getfield(layer, name)) for name in fieldnames(typeof(layer))), ", ")
    print(io, ")")
end

field_summary(x::AbstractArray) = join(size(x), "×")
field_summary(x::AbstractVector{<:HGFLayer}) = string(length(x), " layers")
field_summary(x) = sprint(show, x)

"""
    get_model_type(model_type::Symbol) -> Dict{Symbol,Type}

The tasks a model type offers in Flux and the type of each, e.g. `get_model_type(:bert)[:formaskedlm]`.
"""
function get_model_type(model_type::Symbol)
    haskey(MODEL_TYPES, model_type) ||
        throw(ArgumentError("no Flux models for model type $(repr(model_type)); expected one of $(join(sort!(collect(keys(MODEL_TYPES))), ", "))"))
    return MODEL_TYPES[model_type]
end

"The task name of a Flux model, as the tables in bridge.flux_layout name it."
function model_task(model)
    for tasks in values(MODEL_TYPES), (task, flux_type) in tasks
        model isa flux_type && return task
    end
    throw(ArgumentError("$(typeof(model)) is not an HGFBridge model"))
end

"""
    build_model(config::HGFConfig, task::Symbol)

A freshly initialised Flux model of `task` (`:model`, `:formaskedlm`, `:lmheadmodel`,
`:forsequenceclassification`) for `config`; each type's constructor takes
`(config, hyperparameters(config))`.
"""
function build_model(config::HGFConfig, task::Symbol)
    tasks = get_model_type(model_type(config))
    haskey(tasks, task) ||
        throw(ArgumentError("$(model_type(config)) has no Flux task $(repr(task)); expected one of $(join(sort!(collect(keys(tasks))), ", "))"))
    return tasks[task](config, hyperparameters(config))
end

"`BertModel(config)`, `GPT2LMHeadModel(config)`, ...: a freshly initialised model of that type."
(Model::Type{<:HGFPreTrainedModel})(config::HGFConfig) = Model(config, hyperparameters(config))
