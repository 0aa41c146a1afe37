# The Llama family (Llama, Mistral, Qwen2) against transformers. Included by runtests.jl after its
# helpers (model_pair, test_inputs, expected_outputs, max_difference, check_parity, adam_step_lowers_loss). The
# tiny configs are tests/flux_numpy.py's LLAMA_FAMILY: grouped-query attention, head_dim != hidden
# / heads, biases, sliding windows shorter than the input, tied (llama, qwen2) and untied (mistral)
# heads, and the llama3, linear and yarn RoPE types; the same oracles as tests/test_flux_layout.py.

const LLAMA_CASES = [(family, task) for family in (:llama, :mistral, :qwen2) for task in (:model, :forcausallm, :forsequenceclassification)]

@testset "Llama family" begin
    @testset "parity with transformers: $family $task" for (family, task) in LLAMA_CASES
        @test check_parity(family, task) isa get_model_type(family)[task]
    end

    @testset "left padding: finite, and transformers' values on real tokens: $family" for family in (:llama, :mistral, :qwen2)
        torch_model, model = model_pair(family, :forcausallm)
        ids, mask, types = reference.inputs(string(family); left_padding = true)
        expected = pyconvert(Array{Float32}, reference.julia_layout(reference.torch_outputs(torch_model, ids, mask, types).logits))
        julia_ids = pyconvert(Matrix{Int}, flux_layout.token_ids_to_flux(ids))
        julia_mask = pyconvert(Matrix{Bool}, flux_layout.mask_to_flux(mask))
        logits = model(julia_ids; attention_mask = julia_mask).logits
        @test all(isfinite, logits)
        real = findall(julia_mask)
        @test maximum(abs.(logits[:, real] .- expected[:, real])) < 1e-5
    end

    @testset "tied heads share one array; untied ones do not" begin
        _, tied = model_pair(:llama, :forcausallm)
        @test tied.lm_head.weight === tied.model.embed_tokens.weight
        _, untied = model_pair(:mistral, :forcausallm)
        @test untied.lm_head.weight !== untied.model.embed_tokens.weight
    end

    @testset "save_model then Python's from_pretrained is bit-exact: $family $task $format" for (family, task) in LLAMA_CASES, format in (:safetensors, :bin)
        check_save_round_trip(family, task, format)
    end

    @testset "loss matches transformers and one Adam step lowers it" begin
        torch_model, model = model_pair(:qwen2, :forcausallm)
        python_inputs, ids, _ = test_inputs(:qwen2)
        loss(m) = causal_lm_loss(m(ids).logits, ids)
        @test abs(loss(model) - pyconvert(Float64, reference.torch_lm_loss(torch_model, python_inputs[1]))) < 1e-5
        @test adam_step_lowers_loss(model, loss)
        _, classifier = model_pair(:llama, :forsequenceclassification)
        _, class_ids, class_kwargs = test_inputs(:llama)
        @test adam_step_lowers_loss(classifier, m -> cross_entropy(m(class_ids; class_kwargs...).logits, [1, 3]))
    end

    @testset "bf16 checkpoints load as their Float32 values" begin
        torch_model, _ = model_pair(:mistral, :model)
        directory = mktempdir()
        torch_model.to(pyimport("torch").bfloat16).save_pretrained(directory)
        model = load_model(directory, :model)
        python_inputs, ids, kwargs = test_inputs(:mistral)
        expected = expected_outputs(torch_model.float(), :mistral, :model, python_inputs)
        @test max_difference(model(ids; kwargs...).last_hidden_state, expected[:last_hidden_state]) < 1e-5
    end
end
