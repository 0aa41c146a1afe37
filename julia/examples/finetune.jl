# Fine-tune a GPT-2 on a toy corpus with Flux, on the GPU when CUDA works, and save it so that
# Python's from_pretrained loads it (see docs/julia.md for the Python side).
#
#   julia --project=. julia/examples/finetune.jl [SOURCE] [OUTPUT]
#
# SOURCE is a Hub repo id or a local directory holding a GPT-2 checkpoint and its tokenizer
# (default "gpt2", fetched once through the artifact store); OUTPUT defaults to "finetuned-gpt2".

using HGFBridge
using Flux
using CUDA, cuDNN  # in this environment (the root Project.toml), not in HGFBridge's dependencies
using Random

const SOURCE = get(ARGS, 1, "gpt2")
const OUTPUT = get(ARGS, 2, "finetuned-gpt2")
const EPOCHS = 20

const CORPUS = [
    "The bridge carries one model between Python and Julia.",
    "Flux trains the model and Python loads it back.",
    "Weights cross the bridge without losing a single bit.",
    "A tiny corpus is enough to watch the loss go down.",
]

function main()
    Random.seed!(0)
    # to_device(:cuda) is an error, never a silent CPU model, when CUDA or cuDNN is not functional.
    device = CUDA.functional() ? :cuda : :cpu
    @info "fine-tuning $SOURCE on $(length(CORPUS)) sentences, device $device"

    tokenizer = load_tokenizer(SOURCE)
    model = to_device(load_model(SOURCE, :lmheadmodel; trainmode = true), device)  # dropout inside gradients
    # GPT-2's tokenizer has no padding token: encode keeps one text unpadded, one (seq, 1) batch each.
    sentences = [to_device(encode(tokenizer, text).input_ids, device) for text in CORPUS]

    corpus_loss(m) = sum(causal_lm_loss(m(ids).logits, ids) for ids in sentences) / length(sentences)
    optimiser = Flux.setup(Adam(5e-5), model)
    @info "before" loss = corpus_loss(model)
    for _ in 1:EPOCHS, ids in shuffle(sentences)
        _, gradients = Flux.withgradient(m -> causal_lm_loss(m(ids).logits, ids), model)
        Flux.update!(optimiser, model, gradients[1])
    end
    @info "after $EPOCHS epochs" loss = corpus_loss(model)

    save_model(OUTPUT, model)            # config.json + model.safetensors (from the GPU too)
    tokenizer.save_pretrained(OUTPUT)    # so Python finds the tokenizer next to the weights
    @info "saved to $OUTPUT"
end

main()
