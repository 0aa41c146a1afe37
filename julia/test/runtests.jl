# Run from the repository root:  julia --project=. julia/test/runtests.jl
# (PythonCall must use the project's Python: JULIA_CONDAPKG_BACKEND=Null and
# JULIA_PYTHONCALL_EXE=<repo>/.venv/bin/python; see docs/julia.md.)
#
# The oracles are transformers' PyTorch models, built by tests/flux_numpy.py (the same ones the
# Python tests check bridge/flux_layout.py against), called through PythonCall.

using HGFBridge
using Flux
using PythonCall
using Test
using CUDA

const ROOT = dirname(dirname(@__DIR__))
pyimport("sys").path.insert(0, joinpath(ROOT, "tests"))
const reference = pyimport("flux_numpy")
const flux_layout = pyimport("bridge.flux_layout")

const CASES = [
    (:bert, :model), (:bert, :formaskedlm), (:bert, :forsequenceclassification),
    (:gpt2, :model), (:gpt2, :lmheadmodel), (:gpt2, :forsequenceclassification),
    (:roberta, :model), (:roberta, :formaskedlm), (:roberta, :forsequenceclassification),
]

"A tiny random transformers model and the Flux model holding its weights."
function model_pair(family::Symbol, task::Symbol; overrides...)
    torch_model = reference.make_model(string(family), string(task); overrides...)
    py_config = reference.our_config(torch_model)
    weights = flux_layout.flux_weights(reference.state_dict_numpy(torch_model), py_config, string(task))
    return torch_model, HGFBridge.model_from_weights(py_config, task, weights)
end

"The Python inputs (batch-first, 0-based) and their Julia form ((seq, batch), 1-based)."
function test_inputs(family::Symbol)
    ids, mask, types = reference.inputs(string(family))
    julia_ids = pyconvert(Matrix{Int}, flux_layout.token_ids_to_flux(ids))
    julia_mask = pyconvert(Matrix{Bool}, flux_layout.mask_to_flux(mask))
    kwargs = (; attention_mask = julia_mask)
    if !pyis(types, pybuiltins.None)
        kwargs = (; kwargs..., token_type_ids = pyconvert(Matrix{Int}, flux_layout.token_ids_to_flux(types)))
    end
    return (ids, mask, types), julia_ids, kwargs
end

"transformers' outputs, as Julia arrays in Julia's layout (every axis reversed)."
function expected_outputs(torch_model, family::Symbol, task::Symbol, python_inputs)
    outputs = reference.torch_outputs(torch_model, python_inputs...)
    names = pyconvert(Vector{String}, reference.output_names(string(family), string(task)))
    return Dict(Symbol(name) => pyconvert(Array{Float32}, reference.julia_layout(pygetattr(outputs, name))) for name in names)
end

max_difference(a, b) = maximum(abs.(Array(a) .- b))

"One Adam step on `loss`, dropout off so that before and after are the same function."
function adam_step_lowers_loss(model, loss)
    Flux.testmode!(model)
    before = loss(model)
    optimiser = Flux.setup(Adam(1e-3), model)
    _, gradients = Flux.withgradient(loss, model)
    Flux.update!(optimiser, model, gradients[1])
    return loss(model) < before
end

@testset "HGFBridge" begin
    @testset "parity with transformers: $family $task" for (family, task) in CASES
        torch_model, model = model_pair(family, task)
        python_inputs, ids, kwargs = test_inputs(family)
        expected = expected_outputs(torch_model, family, task, python_inputs)
        got = model(ids; kwargs...)
        for (name, array) in expected
            @test size(getproperty(got, name)) == size(array)
            @test max_difference(getproperty(got, name), array) < 1e-5
        end
    end

    @testset "untied heads" for (family, task) in [(:bert, :formaskedlm), (:gpt2, :lmheadmodel)]
        torch_model, model = model_pair(family, task; tie_word_embeddings = false)
        python_inputs, ids, kwargs = test_inputs(family)
        expected = expected_outputs(torch_model, family, task, python_inputs)
        @test max_difference(model(ids; kwargs...).logits, expected[:logits]) < 1e-5
    end

    @testset "tied weights are one array" begin
        _, gpt2 = model_pair(:gpt2, :lmheadmodel)
        @test gpt2.lm_head.weight === gpt2.transformer.wte.weight
        _, bert = model_pair(:bert, :formaskedlm)
        @test bert.head.weight === bert.bert.embeddings.word_embeddings.weight
    end

    @testset "save_model then Python's from_pretrained is bit-exact: $family $task $format" for (family, task) in CASES, format in (:safetensors, :bin)
        torch_model, model = model_pair(family, task)
        directory = mktempdir()
        save_model(directory, model; format = format)
        @test isfile(joinpath(directory, "config.json"))
        @test isempty(pyconvert(Vector{String}, reference.reload_mismatches(torch_model, directory)))
        # and back into Julia through the file
        reloaded = load_model(directory, task)
        python_inputs, ids, kwargs = test_inputs(family)
        @test model(ids; kwargs...) == reloaded(ids; kwargs...)
    end

    @testset "hgf\"dir:item\", configs, model types" begin
        torch_model, model = model_pair(:gpt2, :lmheadmodel)
        directory = mktempdir()
        save_model(directory, model)
        @test cd(() -> hgf".:config", directory).model_type === :gpt2  # a string macro does not interpolate
        config = hgf("$directory:config")
        @test config.model_type === :gpt2 && config[:hidden_size] == 16 && config[:n_embd] == 16
        @test hgf("$directory:lmheadmodel") isa GPT2LMHeadModel
        @test get_model_type(:bert)[:formaskedlm] === BertForMaskedLM
        @test_throws ArgumentError get_model_type(:t5)
        copy_directory = mktempdir()
        save_config(copy_directory, config)
        @test pyconvert(Bool, pyimport("bridge.config").load_config(copy_directory) == config.py)
    end

    @testset "bf16 checkpoints load as their Float32 values" begin
        torch_model, _ = model_pair(:gpt2, :model)
        directory = mktempdir()
        torch_model.to(pyimport("torch").bfloat16).save_pretrained(directory)
        model = load_model(directory, :model)
        widened = torch_model.float()
        python_inputs, ids, kwargs = test_inputs(:gpt2)
        expected = expected_outputs(widened, :gpt2, :model, python_inputs)
        @test max_difference(model(ids; kwargs...).last_hidden_state, expected[:last_hidden_state]) < 1e-5
    end

    @testset "one Adam step lowers the loss" begin
        torch_model, model = model_pair(:gpt2, :lmheadmodel)
        python_inputs, ids, _ = test_inputs(:gpt2)
        loss(m) = causal_lm_loss(m(ids).logits, ids)  # every position counts, as with labels = input_ids
        @test abs(loss(model) - pyconvert(Float64, reference.torch_lm_loss(torch_model, python_inputs[1]))) < 1e-5
        @test adam_step_lowers_loss(model, loss)
        @test model.lm_head.weight === model.transformer.wte.weight  # still tied after the update

        _, classifier = model_pair(:bert, :forsequenceclassification)
        _, bert_ids, bert_kwargs = test_inputs(:bert)
        labels = [1, 3]
        @test adam_step_lowers_loss(classifier, m -> cross_entropy(m(bert_ids; bert_kwargs...).logits, labels))
    end

    @testset "Artifacts stdlib finds a registered file without Python's help" begin
        root = mktempdir()
        source = joinpath(mktempdir(), "config.json")
        write(source, "{\"model_type\": \"gpt2\"}")
        store = pyimport("bridge.artifacts").ArtifactStore(root)
        store.register_file(source, "org/tiny/config.json"; repo = "org/tiny", file = "config.json")
        path = artifact_file("org/tiny", "config.json"; root = root)
        @test read(path, String) == "{\"model_type\": \"gpt2\"}"
        @test_throws ErrorException artifact_file("org/other", "config.json"; root = root)
    end

    if CUDA.functional()
        @testset "GPU: parity, training, saving" begin
            torch_model, model = model_pair(:gpt2, :lmheadmodel)
            python_inputs, ids, kwargs = test_inputs(:gpt2)
            expected = expected_outputs(torch_model, :gpt2, :lmheadmodel, python_inputs)
            gpu_model = to_device(model, :cuda)
            @test gpu_model.lm_head.weight === gpu_model.transformer.wte.weight
            gpu_ids, gpu_mask = gpu(ids), gpu(kwargs.attention_mask)
            @test max_difference(gpu_model(gpu_ids; attention_mask = gpu_mask).logits, expected[:logits]) < 1e-4
            @test adam_step_lowers_loss(gpu_model, m -> causal_lm_loss(m(gpu_ids; attention_mask = gpu_mask).logits, gpu_ids))
            directory = mktempdir()
            save_model(directory, gpu_model)
            reloaded = load_model(directory, :lmheadmodel)
            @test Array(gpu_model.transformer.wte.weight) == reloaded.transformer.wte.weight
        end
    else
        @info "CUDA is not functional here: GPU tests skipped"
    end
end
