"""kernelize swaps our layer into transformers models, really replaces the
forwards, and leaves the logits bit for bit unchanged."""

import pytest
import torch
from kernels import LayerRepository, Mode, kernelize, use_kernel_mapping
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from conftest import REPO_ID, VERSION, requires_cuda


def tiny_llama(dtype=torch.float32, device="cpu"):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=99, hidden_size=64, intermediate_size=74, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()
    with torch.no_grad():  # HF initializes norm weights to ones; make them matter
        for module in model.modules():
            if isinstance(module, LlamaRMSNorm):
                module.weight.copy_(torch.rand_like(module.weight) + 0.5)
    return model


def our_mapping(device):
    # revision= keeps the lookup local: LOCAL_KERNELS serves it without asking the Hub.
    repo = LayerRepository(repo_id=REPO_ID, layer_name="RMSNorm", revision=f"v{VERSION}")
    return {"RMSNorm": {device: repo}}


def kernelized_norms(model):
    """RMSNorm modules whose forward is now bound to our kernel's layer."""
    return [
        m for m in model.modules()
        if isinstance(m, LlamaRMSNorm)
        and getattr(m.forward, "__func__", None) is not None
        and m.forward.__func__.__module__.startswith("_rmsnorm_")
    ]


def our_op_calls(model, input_ids):
    with torch.profiler.profile() as prof, torch.no_grad():
        model(input_ids)
    return sum(e.count for e in prof.key_averages() if e.key.startswith("_rmsnorm_") and "rms_norm" in e.key)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_kernelize_tiny_llama_bitwise(device, dtype):
    model = tiny_llama(dtype, device)
    input_ids = torch.randint(0, 99, (2, 11), device=device)
    with torch.no_grad():
        expected = model(input_ids).logits

    norms = [m for m in model.modules() if isinstance(m, LlamaRMSNorm)]
    assert len(norms) == 5  # 2 layers x 2 + final
    with use_kernel_mapping(our_mapping(device), inherit_mapping=False):
        kernelize(model, mode=Mode.INFERENCE, device=device)

    assert len(kernelized_norms(model)) == len(norms)
    assert our_op_calls(model, input_ids) == len(norms)
    with torch.no_grad():
        got = model(input_ids).logits
    if device == "cpu":
        assert torch.equal(got, expected)
    else:  # ATen's CUDA summation order differs (tests/test_numerics.py)
        torch.testing.assert_close(got, expected, atol=5e-2 if dtype == torch.bfloat16 else 1e-4, rtol=0)
        assert (got.argmax(-1) == expected.argmax(-1)).float().mean() > 0.95


def test_layer_reads_eps_attribute(kernel, device):
    """Classes that store `eps` instead of `variance_epsilon` (Gemma-style
    attribute naming) are served by the same layer."""

    class EpsNorm(torch.nn.Module):
        def __init__(self, hidden):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.rand(hidden) + 0.5)
            self.eps = 1e-3

    module = EpsNorm(32).to(device)
    x = torch.randn(3, 32, device=device)
    got = kernel.layers.RMSNorm.forward(module, x)
    torch.testing.assert_close(got, kernel.rms_norm(x, module.weight, 1e-3), atol=0, rtol=0)


def test_layer_passes_kernels_validation():
    """The kernels loader's layer rules: no __init__, only forward, allowed members."""
    from kernels.layer.layer import _validate_layer

    from kernels import get_kernel

    kernel = get_kernel(REPO_ID, version=VERSION)
    _validate_layer(check_cls=LlamaRMSNorm, cls=kernel.layers.RMSNorm, repo="rmsnorm")


def test_olmo_order_models_stay_exact(device):
    """Olmo2 shares the "RMSNorm" label but rounds once at the end; kernelizing
    it must not shift its logits by a rounding (Liger's mapping does)."""
    from transformers import Olmo2Config, Olmo2ForCausalLM
    from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm

    torch.manual_seed(0)
    config = Olmo2Config(vocab_size=99, hidden_size=64, intermediate_size=74, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = Olmo2ForCausalLM(config).to(device=device, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, Olmo2RMSNorm):
                module.weight.copy_(torch.rand_like(module.weight) + 0.5)
    input_ids = torch.randint(0, 99, (2, 9), device=device)
    with torch.no_grad():
        expected = model(input_ids).logits
    with use_kernel_mapping(our_mapping(device), inherit_mapping=False):
        kernelize(model, mode=Mode.INFERENCE, device=device)
    assert any(m.forward.__func__.__module__.startswith("_rmsnorm_")
               for m in model.modules() if isinstance(m, Olmo2RMSNorm))
    with torch.no_grad():
        assert torch.equal(model(input_ids).logits, expected)


def test_gpt_oss_norm_keeps_its_rounding(kernel, device):
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRMSNorm

    module = GptOssRMSNorm(96, eps=1e-5).to(device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        module.weight.uniform_(0.5, 1.5)
        x = torch.randn(5, 96, device=device, dtype=torch.bfloat16)
        assert torch.equal(kernel.layers.RMSNorm.forward(module, x), module(x))


KERNEL_CONFIG_SCRIPT = """
import sys, torch
from kernels import LayerRepository, Mode, kernelize, use_kernel_mapping
from transformers import AutoModelForCausalLM, KernelConfig
from transformers.models.llama.modeling_llama import LlamaRMSNorm

path, repo_id, revision = sys.argv[1], sys.argv[2], sys.argv[3]
ours = lambda model: [m for m in model.modules() if isinstance(m, LlamaRMSNorm)
                      and getattr(m.forward, "__func__", m.forward).__module__.startswith("_rmsnorm_")]
vanilla = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="cuda").eval()
# revision=, not version=: a version is resolved on the Hub even with LOCAL_KERNELS.
# inherit_mapping=False: transformers' default mapping also names Hub kernels
# (kernels-community/rotary, version 2) that cannot resolve offline.
config = KernelConfig({"RMSNorm": (f"{repo_id}:RMSNorm", {"revision": revision, "trust_remote_code": True})},
                      inherit_mapping=False)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="cuda",
                                             use_kernels=True, kernel_config=config)
assert len(ours(model)) == 5, len(ours(model))
ids = torch.randint(0, 99, (2, 11), device="cuda")
with torch.no_grad():
    torch.testing.assert_close(model(ids).logits, vanilla(ids).logits, atol=5e-2, rtol=0)
# transformers 5.22.2 registers a KernelConfig for the current mode only, so
# model.train() falls back to LlamaRMSNorm.forward; a mode-less mapping fixes it.
model.train()
reverted = len(ours(model)) == 0
with use_kernel_mapping({"RMSNorm": {"cuda": LayerRepository(repo_id=repo_id, layer_name="RMSNorm",
                                                             revision=revision)}}, inherit_mapping=False):
    kernelize(model, mode=Mode.TRAINING, device="cuda")
assert len(ours(model)) == 5
print("OK reverted-on-train" if reverted else "OK kept-on-train")
"""


@requires_cuda
def test_kernel_config_route_offline(tmp_path):
    """from_pretrained(use_kernels=True, kernel_config=KernelConfig(...)) with
    LOCAL_KERNELS and HF_HUB_OFFLINE=1, and the model.train() workaround."""
    import os
    import subprocess
    import sys

    tiny_llama(torch.bfloat16, "cpu").save_pretrained(tmp_path / "tiny")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", KERNEL_CONFIG_SCRIPT, str(tmp_path / "tiny"), REPO_ID, f"v{VERSION}"],
        env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout
