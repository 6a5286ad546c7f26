"""End to end on one GPU: a Llama-architecture model with random bf16 weights
(hidden 2048, intermediate 8192, 16 layers, 32 heads, 8 KV heads, vocab 128256),
greedy decode tokens/s at batch 1 and 8 (eager, no CUDA graphs) and the time of
one 8x2048-token prefill, for: vanilla HF, ours (kernelize), Liger's RMSNorm and
torch.nn.functional.rms_norm swapped into every LlamaRMSNorm. Tokens of each
variant are compared with vanilla's.

    LOCAL_KERNELS=kernels-rmsnorm/rmsnorm=$PWD python benchmarks/bench_e2e.py --out benchmarks/results/e2e-h100.json
"""

import argparse
import datetime as dt
import json
import os
import sys
import time
import tomllib
import types
from pathlib import Path

import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parent.parent


def build_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256, max_position_embeddings=4096)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    with torch.no_grad():
        for module in norms(model):
            module.weight.uniform_(0.5, 1.5)
    return model


def norms(model):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    return [m for m in model.modules() if isinstance(m, LlamaRMSNorm)]


def restore(model):
    for module in norms(model):
        module.__dict__.pop("forward", None)


def swap_ours(model):
    from kernels import LayerRepository, Mode, kernelize, use_kernel_mapping

    general = tomllib.loads((REPO_ROOT / "build.toml").read_text())["general"]
    repo = LayerRepository(repo_id=general["hub"]["repo-id"], layer_name="RMSNorm", revision=f"v{general['version']}")
    with use_kernel_mapping({"RMSNorm": {"cuda": repo}}, inherit_mapping=False):
        kernelize(model, mode=Mode.INFERENCE, device="cuda")


def swap_liger(model):
    from liger_kernel.ops.rms_norm import LigerRMSNormFunction

    def forward(self, hidden_states):
        return LigerRMSNormFunction.apply(hidden_states, self.weight, self.variance_epsilon, 0.0, "llama", False)

    for module in norms(model):
        module.forward = types.MethodType(forward, module)


def swap_torch(model):
    def forward(self, hidden_states):
        return F.rms_norm(hidden_states, (hidden_states.shape[-1],), self.weight, self.variance_epsilon)

    for module in norms(model):
        module.forward = types.MethodType(forward, module)


VARIANTS = {"vanilla": lambda model: None, "ours": swap_ours, "liger": swap_liger, "torch_rms_norm": swap_torch}


def decode(model, batch, prompt_len, new_tokens):
    torch.manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt_len), device="cuda")
    kwargs = dict(do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})
        torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(ids, **kwargs)
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return out[:, prompt_len:], batch * new_tokens / seconds


def norm_parity(model, batch, prompt_len, new_tokens):
    """Where tokens differ, is it the norm? Runs vanilla's greedy decode with
    hooks that keep every LlamaRMSNorm call's input and output, then runs our
    op on the same inputs: elements not bit-equal to HF's own output, per
    input shape (B, S, H). HF's mean is ATen's reduction, whose summation order
    depends on the shape; ours does not (NOTES.md v7)."""
    import kernels

    general = tomllib.loads((REPO_ROOT / "build.toml").read_text())["general"]
    ours = kernels.get_kernel(general["hub"]["repo-id"], version=general["version"])
    restore(model)
    calls = []

    def keep(module, inputs, output):
        calls.append((module, inputs[0].detach().clone(), output.detach().clone()))

    handles = [m.register_forward_hook(keep) for m in norms(model)]
    try:
        decode(model, batch, prompt_len, new_tokens)
    finally:
        for handle in handles:
            handle.remove()
    by_shape = {}
    with torch.no_grad():
        for module, x, y in calls:
            mine = ours.rms_norm(x, module.weight, module.variance_epsilon)
            stats = by_shape.setdefault(str(tuple(x.shape)), {"calls": 0, "elements": 0, "differing": 0,
                                                               "calls_differing": 0})
            differing = int((mine != y).sum())
            stats["calls"] += 1
            stats["elements"] += y.numel()
            stats["differing"] += differing
            stats["calls_differing"] += int(differing > 0)
    return by_shape


def prefill_ms(model, batch=8, seq=2048, reps=5):
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device="cuda")
    with torch.no_grad():
        model(ids, logits_to_keep=1)
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            model(ids, logits_to_keep=1)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "e2e.json")
    args = parser.parse_args(argv)

    model = build_model()
    # The first generate of a process pays for cuBLAS handles, kernel loading
    # and the allocator's growth; one full untimed pass keeps that out of
    # whichever variant happens to run first.
    for batch in (1, 8):
        decode(model, batch, 16, args.new_tokens)
    prefill_ms(model, reps=1)
    # Eager decode is bound by the host's Python; its speed drifts by tens of
    # percent between minutes on a shared machine. Variants are therefore timed
    # in interleaved rounds and each reports its median.
    samples = {name: {"decode_b1_tok_s": [], "decode_b8_tok_s": [], "prefill_8x2048_ms": []} for name in VARIANTS}
    equal, errors, reference = {}, {}, {}
    for round_index in range(args.rounds):
        for name, swap in VARIANTS.items():
            if name in errors:
                continue
            restore(model)
            try:
                swap(model)
            except Exception as e:  # a peer that is not installed is recorded, not fatal
                errors[name] = f"{type(e).__name__}: {e}"
                continue
            for batch in (1, 8):
                tokens, tps = decode(model, batch, 16, args.new_tokens)
                samples[name][f"decode_b{batch}_tok_s"].append(tps)
                if name == "vanilla" and round_index == 0:
                    reference[batch] = tokens
                # Every round: vanilla against its own first round too (is
                # greedy decode of this model reproducible at all?).
                equal.setdefault((name, batch), []).append(bool(torch.equal(tokens, reference[batch])))
            samples[name]["prefill_8x2048_ms"].append(prefill_ms(model))
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    rows = []
    for name in VARIANTS:
        if name in errors:
            rows.append({"impl": name, "error": errors[name]})
            continue
        row = {"impl": name}
        for key, values in samples[name].items():
            row[key] = round(sorted(values)[len(values) // 2], 2)
            row[key + "_samples"] = [round(v, 2) for v in values]
            # Host noise only ever slows a round down: the best round is the
            # least disturbed estimate (reported beside the median).
            row[key + "_best"] = round(min(values) if key.endswith("_ms") else max(values), 2)
        row["decode_b1_tokens_equal_vanilla"] = all(equal[(name, 1)])
        row["decode_b8_tokens_equal_vanilla"] = all(equal[(name, 8)])
        row["tokens_equal_vanilla_per_round"] = {f"b{b}": equal[(name, b)] for b in (1, 8)}
        rows.append(row)

    base = next(r for r in rows if r["impl"] == "vanilla")
    for row in rows:
        if "error" in row:
            continue
        row["decode_b1_speedup"] = round(row["decode_b1_tok_s"] / base["decode_b1_tok_s"], 3)
        row["decode_b8_speedup"] = round(row["decode_b8_tok_s"] / base["decode_b8_tok_s"], 3)
        row["prefill_speedup"] = round(base["prefill_8x2048_ms"] / row["prefill_8x2048_ms"], 3)
        row["decode_b1_speedup_best"] = round(row["decode_b1_tok_s_best"] / base["decode_b1_tok_s_best"], 3)
        row["decode_b8_speedup_best"] = round(row["decode_b8_tok_s_best"] / base["decode_b8_tok_s_best"], 3)
    result = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "kernel_env": {name: value for name, value in os.environ.items() if name.startswith("RMSNORM_")},
        "model": "LlamaForCausalLM random bf16: hidden 2048, inter 8192, 16 layers, 32 heads, 8 kv, vocab 128256",
        "rows": rows,
        "norm_parity_vs_hf": {f"b{b}": norm_parity(model, b, 16, args.new_tokens) for b in (1, 8)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'impl':>15} {'b1 tok/s':>9} {'b8 tok/s':>9} {'prefill ms':>10} {'b1 x':>6} {'b8 x':>6} {'pf x':>6} same-tokens")
    for r in rows:
        if "error" in r:
            print(f"{r['impl']:>15} error: {r['error'][:80]}")
            continue
        print(f"{r['impl']:>15} {r['decode_b1_tok_s']:9.1f} {r['decode_b8_tok_s']:9.1f} {r['prefill_8x2048_ms']:10.2f} "
              f"{r['decode_b1_speedup']:6.3f} {r['decode_b8_speedup']:6.3f} {r['prefill_speedup']:6.3f} "
              f"{r['decode_b1_tokens_equal_vanilla'] and r['decode_b8_tokens_equal_vanilla']}")
    print("our op on the inputs vanilla's norms saw, elements not bit-equal to HF's output:")
    for batch, shapes in result["norm_parity_vs_hf"].items():
        for shape, stats in shapes.items():
            print(f"  {batch} {shape}: {stats['differing']} of {stats['elements']} elements "
                  f"({stats['calls_differing']} of {stats['calls']} calls)")


if __name__ == "__main__":
    main()
