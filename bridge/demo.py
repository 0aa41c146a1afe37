"""The main job (`make demo`): the whole bridge, offline, in under a minute.

It builds a small GPT-2 (the seed's example: vocab 10, n_embd 128, 2 layers), saves it, inspects and
converts the checkpoint, registers the files in an artifact store, looks the model up by name with
`hgf` while the Hub is switched off, checks that every path gives bit-identical weights and outputs,
and runs the Julia round trip when a `julia` executable is present (saying plainly when it is not).
Everything it writes goes under ./demo-output, its store included, so it leaves your caches alone.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

OUTPUT = Path("demo-output")


def step(title: str) -> None:
    print(f"\n== {title}")


def check(condition: bool, what: str) -> None:
    print(f"   {'ok  ' if condition else 'FAIL'} {what}")
    if not condition:
        raise SystemExit(f"demo failed: {what}")


def main() -> None:
    shutil.rmtree(OUTPUT, ignore_errors=True)
    OUTPUT.mkdir()
    os.environ["HGF_BRIDGE_HOME"] = str((OUTPUT / "hgf-bridge-home").resolve())
    os.environ["HF_HUB_OFFLINE"] = "1"  # the demo never touches the network

    import numpy as np
    import torch

    import pickle_io
    from bridge import hgf
    from bridge.artifacts import ArtifactStore
    from bridge.cli import main as hgf_cli
    from bridge.config import GPT2Config
    from bridge.models import GPT2LMHeadModel

    step("Build a small GPT-2 (vocab 10, n_embd 128, 2 layers) and save it")
    torch.manual_seed(0)
    # bos/eos = the last id, as GPT-2's 50256 is (its default would lie outside a vocabulary of 10)
    config = GPT2Config(
        vocab_size=10, n_embd=128, n_layer=2, n_head=4, n_positions=64, bos_token_id=9, eos_token_id=9
    )
    model = GPT2LMHeadModel(config).eval()
    model_dir = OUTPUT / "tiny-gpt2"
    model.save_pretrained(model_dir, safe_serialization=False)
    for path in sorted(model_dir.iterdir()):
        print(f"   {path} ({path.stat().st_size:,} bytes)")

    checkpoint = model_dir / "pytorch_model.bin"
    step(f"hgf inspect {checkpoint}")
    hgf_cli(["inspect", str(checkpoint)])

    step("hgf convert: zip .bin -> .safetensors -> legacy .bin, all bit-exact")
    safetensors_file = OUTPUT / "tiny-gpt2.safetensors"
    legacy_file = OUTPUT / "tiny-gpt2-legacy.bin"
    hgf_cli(["convert", str(checkpoint), str(safetensors_file)])
    hgf_cli(["convert", str(safetensors_file), str(legacy_file), "--format", "legacy"])
    original = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    for path in (checkpoint, safetensors_file, legacy_file):
        loaded = pickle_io.load(path)
        same = all(np.array_equal(loaded[name], original[name]) for name in loaded)
        check(same and set(original) >= set(loaded), f"{path.name}: {len(loaded)} tensors equal the model's")

    step("Look it up from its local directory")
    print(f"   hgf('{model_dir}:config') = {hgf(f'{model_dir}:config')!r}")

    step("Register the files in the artifact store as repo 'demo/tiny-gpt2'")
    store = ArtifactStore()
    for path in sorted(model_dir.iterdir()):
        store.register_file(path, f"demo/tiny-gpt2/{path.name}")
    for name in store.names():
        print(f"   {name} -> {store.resolve(name)}")

    step("Look it up by name with the Hub switched off (HF_HUB_OFFLINE=1)")
    print(f"   hgf('demo/tiny-gpt2:config') = {hgf('demo/tiny-gpt2:config')!r}")
    reloaded = hgf("demo/tiny-gpt2:lmheadmodel").eval()
    prompt = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        check(torch.equal(model(prompt).logits, reloaded(prompt).logits), "logits of the reloaded model equal the original's")
        greedy = reloaded.generate(prompt, max_new_tokens=8)
    print(f"   greedy continuation of {prompt.tolist()[0]}: {greedy.tolist()[0][4:]}")

    step("Julia round trip (Flux)")
    julia_round_trip(model, config, model_dir)
    print(f"\nDone. Everything above is under {OUTPUT}/.")


def julia_round_trip(model, config, model_dir: Path) -> None:
    """Load the model into Flux, save it back from Julia, and compare, when Julia is installed."""
    if shutil.which("julia") is None:
        print("   skipped: no `julia` executable on PATH, so the Flux round trip did not run.")
        print("   Install Julia 1.10 or newer (https://julialang.org/downloads/) and run `make demo` again.")
        return
    import torch

    from bridge import julia
    from bridge.models import GPT2LMHeadModel

    flux_model = julia.to_flux(model, device="cpu")  # weights handed over in memory
    back_dir = OUTPUT / "tiny-gpt2-from-julia"
    julia.save_pretrained_from_flux(flux_model, back_dir, config)
    back = GPT2LMHeadModel.from_pretrained(back_dir)
    same = all(torch.equal(back.state_dict()[k], v) for k, v in model.state_dict().items())
    check(same, "weights saved by Julia equal the original's")


if __name__ == "__main__":
    sys.exit(main())
