# Fine-tune a tiny Llama with Flux (on the GPU when CUDA works) and save it so that Python's
# from_pretrained, ours and transformers', loads it. NOT YET RUN: written, parsed and linted where
# Julia is unavailable (see docs/models.md); the layout it relies on is tested in Python.
#
#   julia --project=. julia/examples/finetune_llama.jl [OUTPUT] [SOURCE]
#
# OUTPUT defaults to "finetuned-llama". SOURCE, when given, is a Hub repo id or a local directory
# holding a Llama, Mistral or Qwen2 checkpoint to start from; without it the example builds a tiny
# random Llama (2 layers, grouped-query attention) so that it needs no download. The task is
# learnable by so small a model: continue an arithmetic sequence of token ids.

using HGFBridge
using Flux
using CUDA, cuDNN  # in this environment (the root Project.toml), not in HGFBridge's dependencies
using PythonCall
using Random

const OUTPUT = get(ARGS, 1, "finetuned-llama")
const SOURCE = get(ARGS, 2, nothing)
const STEPS = 200
const SEQ, BATCH = 16, 8

"A tiny Llama config, made by Python's bridge.config (the one place configs are written)."
function tiny_config()
    entries = pyimport("bridge.config").LlamaConfig(;
        vocab_size = 64, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2,
        num_attention_heads = 4, num_key_value_heads = 2, max_position_embeddings = 64,
        tie_word_embeddings = true, pad_token_id = 0, bos_token_id = 1, eos_token_id = 2,
    )
    return HGFConfig(entries)
end

"`BATCH` sequences of `SEQ` ids, (seq, batch), 1-based: start at random, step by 1..3, wrap around."
function arithmetic_batch(vocab::Integer)
    starts, steps = rand(4:vocab, 1, BATCH), rand(1:3, 1, BATCH)
    return mod.(starts .+ steps .* (0:(SEQ - 1)), vocab - 3) .+ 4  # ids 4..vocab: clear of pad, bos, eos
end

function main()
    Random.seed!(0)
    device = CUDA.functional() ? :cuda : :cpu  # to_device(:cuda) errors, never silently stays on the CPU
    model = SOURCE === nothing ? LlamaForCausalLM(tiny_config()) : load_model(SOURCE, :forcausallm)
    model = to_device(model, device)
    vocab = size(model.lm_head.weight, 2)
    @info "training $(SOURCE === nothing ? "a tiny random Llama" : SOURCE) on arithmetic sequences, device $device"

    held_out = to_device(arithmetic_batch(vocab), device)
    loss(m, ids) = causal_lm_loss(m(ids).logits, ids)
    optimiser = Flux.setup(Adam(3e-3), model)
    @info "before" loss = loss(model, held_out)
    for step in 1:STEPS
        ids = to_device(arithmetic_batch(vocab), device)
        value, gradients = Flux.withgradient(m -> loss(m, ids), model)
        Flux.update!(optimiser, model, gradients[1])
        step % 50 == 0 && @info "step $step" loss = value
    end
    @info "after $STEPS steps" loss = loss(model, held_out)

    save_model(OUTPUT, model)  # config.json + model.safetensors, from the GPU too
    @info "saved to $OUTPUT; in Python: bridge.models.LlamaForCausalLM.from_pretrained($(repr(OUTPUT)))"

    # The way back, checked here: Python's model (ours, torch) gives the logits Flux gave.
    ours = pyimport("bridge.models").LlamaForCausalLM.from_pretrained(OUTPUT)
    ids = Array(held_out)
    torch_ids = pyimport("torch").tensor(pyimport("bridge.flux_layout").token_ids_from_flux(ids))
    python_logits = pyconvert(Array{Float32}, ours(torch_ids).logits.detach().numpy())
    julia_logits = Array(model(held_out).logits)
    difference = maximum(abs.(permutedims(python_logits, (3, 2, 1)) .- julia_logits))
    @info "largest logit difference, Python vs Flux" difference
end

main()
