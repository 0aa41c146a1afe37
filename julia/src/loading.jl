# The generic loader and saver. Which Hugging Face key fills which field, and how its bytes are
# laid out, is decided in Python (bridge/flux_layout.py, where it is tested against transformers);
# here we only walk the tables it hands over. No family-specific key logic lives in Julia.

"A Functors.KeyPath from a table path: field names become Symbols, 1-based indices stay Ints."
keypath(path::Py) = KeyPath((step isa Integer ? step : Symbol(step) for step in pyconvert(Tuple, path))...)

"Float32 from bfloat16 bits: a bf16 is the top half of the float32 with the same value."
bfloat16_bits_to_float32(bits::UInt16) = reinterpret(Float32, UInt32(bits) << 16)

"""
    load_weights!(model, weights)

Copy every `bridge.flux_layout.FluxWeight` in `weights` into the model field at its path. The
arrays arrive Julia-shaped (juliacall wraps them as `PyArray`s without copying); bf16 arrives as
UInt16 bits. A shape mismatch is an error naming the key and both shapes.
"""
function load_weights!(model, weights)
    for weight in weights
        key = pyconvert(String, weight.key)
        destination = getkeypath(model, keypath(weight.path))
        source = PyArray(weight.array)
        size(destination) == size(source) ||
            throw(DimensionMismatch("$key: checkpoint array is $(size(source)) (as Julia reads it), Flux field is $(size(destination))"))
        if pyconvert(Bool, weight.bfloat16_bits)
            copyto!(destination, bfloat16_bits_to_float32.(source))
        else
            copyto!(destination, source)
        end
    end
    return model
end

"""
    check_table_covers(model, table)

Every float array of `model` must be a field some table entry fills: a struct field the table
forgot would otherwise keep random weights silently.
"""
function check_table_covers(model, table)
    paths = Set(pyconvert(Tuple, entry.path) for entry in table)
    named = Set(Tuple(step isa Symbol ? string(step) : step for step in kp) for kp in float_array_paths(model))
    forgotten = setdiff(named, paths)
    isempty(forgotten) || error("bridge.flux_layout's table has no entry for $(join(map(p -> join(p, "."), collect(forgotten)), ", "))")
    return nothing
end

function float_array_paths(model)
    paths = KeyPath[]
    fmap_with_path(model) do kp, x
        x isa AbstractArray{<:AbstractFloat} && push!(paths, kp)
        x
    end
    return paths
end

"""
    model_from_weights(py_config, task, weights; trainmode = false) -> model

Build the Flux model of `task` for a `bridge.config` object and fill it from Flux-ready weights
(`bridge.flux_layout.flux_weights`). Used by `load_model` and by Python's `bridge.julia.to_flux`.
`trainmode = false` (the default, as Transformers.jl's `load_model`) switches every dropout off
(`Flux.testmode!`); `trainmode = true` leaves Flux's automatic mode: dropout active inside a
gradient only.
"""
function model_from_weights(py_config, task::Symbol, weights; trainmode::Bool = false)
    config = HGFConfig(py_config)
    model = build_model(config, task)
    check_table_covers(model, flux_layout().flux_table(config.py, string(task)))
    load_weights!(model, weights)
    trainmode || Flux.testmode!(model)
    return model
end

"""
    flux_arrays(model) -> Dict{String,Array}

The model's arrays by Hugging Face key, on the CPU, Julia-shaped (one per untied table entry):
what `bridge.flux_layout.state_dict_from_flux` turns back into a state dict.
"""
function flux_arrays(model)
    table = flux_layout().flux_table(model.config.py, string(model_task(model)))
    arrays = Dict{String,Array}()
    for entry in table
        pyis(entry.tied_to, pybuiltins.None) || continue
        arrays[pyconvert(String, entry.key)] = Array(getkeypath(model, keypath(entry.path)))
    end
    return arrays
end
