"""
    HGFBridge

Hugging Face models as Flux layers, sharing hgf-bridge's Python artifact store and checkpoint I/O.

    using HGFBridge, Flux
    model = hgf"bert-base-cased:formaskedlm"          # Flux model with the pretrained weights (dropout off)
    tokenizer = hgf"bert-base-cased:tokenizer"
    batch = encode(tokenizer, ["Paris is the [MASK] of France."])
    logits = model(batch.input_ids; attention_mask = batch.attention_mask).logits  # (vocab, seq, batch)
    save_model("my-bert", model)                      # loads in Python's from_pretrained

Which checkpoint key fills which Flux field is decided (and tested) in Python, in
`bridge/flux_layout.py`; this package walks the tables it hands over. See docs/julia.md.
"""
module HGFBridge

using Artifacts: artifact_meta
using ChainRulesCore: ChainRulesCore
using Flux: Flux, CUDADevice, Dense, Dropout, Embedding, cpu_device, gpu_device
using Functors: Functors, KeyPath, fmap_with_path, getkeypath
using NNlib: NNlib, relu
using PythonCall: Py, PyArray, PyException, pybuiltins, pyconvert, pydict, pygetattr, pyhasattr, pyimport, pyis, pyisinstance,
                  pylist, pyrepr
using SpecialFunctions: erf
using Statistics: mean

export @hgf_str, hgf, load_config, load_model, save_config, save_model, get_model_type, HGFConfig, HGFPreTrainedModel
export load_tokenizer, encode, decode, artifact_file, to_device, causal_lm_loss, cross_entropy
export BertModel, BertForMaskedLM, BertForSequenceClassification
export GPT2Model, GPT2LMHeadModel, GPT2ForSequenceClassification
export RobertaModel, RobertaForMaskedLM, RobertaForSequenceClassification
export LlamaModel, LlamaForCausalLM, LlamaForSequenceClassification

# One file per concern; a model family is one file that ends by registering its tasks in MODEL_TYPES.
include("python.jl")
include("config.jl")
include("models.jl")
include("layers.jl")
include("bert.jl")
include("gpt2.jl")
include("llama.jl")
include("loading.jl")
include("hgf.jl")
include("tokenizer.jl")
include("artifacts.jl")

end # module
