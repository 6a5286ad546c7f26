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


def tiny_model(family, dtype, device):
    """A tiny random model of a Gemma family (norm weights made to matter)."""
    import transformers

    torch.manual_seed(0)
    common = dict(vocab_size=99, hidden_size=64, intermediate_size=74, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64)
    if family == "gemma":
        model = transformers.GemmaForCausalLM(transformers.GemmaConfig(**common))
    elif family == "gemma2":
        model = transformers.Gemma2ForCausalLM(transformers.Gemma2Config(**common, sliding_window=16))
    else:
        model = transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(**common, sliding_window=16))
    model = model.to(device=device, dtype=dtype).eval()
    with torch.no_grad():
        for module in model.modules():
            if "RMSNorm" in type(module).__name__ and getattr(module, "weight", None) is not None:
                module.weight.copy_(torch.randn_like(module.weight) * 0.3)
    return model


@pytest.mark.parametrize("family,norms_per_class", [
    ("gemma", {"GemmaRMSNorm": 5}),
    ("gemma2", {"Gemma2RMSNorm": 9}),
    ("gemma3", {"Gemma3RMSNorm": 13}),
])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_patch_gemma_models_exact(kernel, device, family, norms_per_class, dtype):
    """Gemma's norms are not labelled for kernelize: patch_rmsnorm_modules
    swaps in the Gemma-order layer; logits stay bit for bit (CPU), and the
    profiler sees our op once per norm."""
    model = tiny_model(family, dtype, device)
    ids = torch.randint(0, 99, (2, 11), device=device)
    with torch.no_grad():
        expected = model(ids).logits
    counts = kernel.patch_rmsnorm_modules(model)
    assert counts == norms_per_class
    with torch.no_grad():
        assert kernel.kernel_op_counts(model, ids) == {"rms_norm": sum(norms_per_class.values())}
        got = model(ids).logits
    if device == "cpu":
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, atol=5e-2 if dtype == torch.bfloat16 else 1e-4, rtol=0)


def test_patch_counts_per_class_and_skips(kernel, device):
    """Llama- and Olmo-order norms are patched with their own order; weightless
    norms and forms the patcher does not know keep their forward, named in a
    warning."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextRMSNormGated

    class WeightlessRMSNorm(LlamaRMSNorm):
        pass

    weightless = WeightlessRMSNorm(32)
    weightless.weight = None
    model = torch.nn.ModuleList([LlamaRMSNorm(32), LlamaRMSNorm(32), Olmo2RMSNorm(32), weightless,
                                 Qwen3NextRMSNormGated(32)]).to(device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        model[2].weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 32, device=device, dtype=torch.bfloat16)
    with torch.no_grad():
        expected = model[2](x)
    with pytest.warns(UserWarning, match=r"Qwen3NextRMSNormGated \(forward is not a known rounding form\).*"
                                         r"WeightlessRMSNorm \(no weight\)"):
        counts = kernel.patch_rmsnorm_modules(model)
    assert counts == {"LlamaRMSNorm": 2, "Olmo2RMSNorm": 1}
    with torch.no_grad():
        assert torch.equal(model[2](x), expected) or device == "cuda"
        assert kernel.kernel_op_counts(model[2], x) == {"rms_norm": 1}


def _decorated_rmsnorm_classes():
    """(class name, compact forward source) of every class transformers labels
    "RMSNorm" for kernelize, read from the installed sources."""
    import pathlib
    import re

    import transformers

    root = pathlib.Path(transformers.__file__).parent / "models"
    found = {}
    pattern = re.compile(r'@use_kernel_forward_from_hub\("RMSNorm"\)\nclass (\w+)\([^)]*\):\n(.*?)(?=\n\S)', re.S)
    for path in sorted(root.glob("*/modeling_*.py")):
        for name, body in pattern.findall(path.read_text()):
            forward = body[body.index("def forward"):] if "def forward" in body else ""
            found[name] = re.sub(r"\s+", "", re.sub(r"#[^\n]*", "", forward))
    return found


def test_olmo_order_list_covers_pinned_transformers(kernel):
    """Every "RMSNorm"-labelled class of the pinned transformers rounds in
    Llama order or is in the layer's Olmo list: no class is silently shifted."""
    classes = _decorated_rmsnorm_classes()
    assert len(classes) > 100
    llama = {n for n, src in classes.items() if "self.weight*hidden_states.to(input_dtype)" in src}
    olmo = {n for n, src in classes.items()
            if "(self.weight*hidden_states).to(input_dtype)" in src
            or "(self.weight.to(torch.float32)*hidden_states).to(input_dtype)" in src}
    assert llama | olmo == set(classes), sorted(set(classes) - llama - olmo)
    assert olmo <= kernel.orders.OLMO_ORDER_CLASSES
    assert not (llama & kernel.orders.OLMO_ORDER_CLASSES)


def test_rounding_order_classifier(kernel):
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRMSNorm
    from transformers.models.llama4.modeling_llama4 import Llama4TextRMSNorm
    from transformers.models.mistral.modeling_mistral import MistralRMSNorm
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHRMSNorm, NemotronHRMSNormGated

    order_of = kernel.orders.rounding_order_of
    assert order_of(MistralRMSNorm) == "llama"
    assert order_of(GptOssRMSNorm) == order_of(NemotronHRMSNorm) == "olmo"
    assert order_of(Gemma2RMSNorm) == "gemma"
    assert order_of(Llama4TextRMSNorm) is None  # x * rsqrt(...).type_as(x): another form
    assert order_of(NemotronHRMSNormGated) is None  # takes a gate


def test_layers_pass_kernels_validation(kernel):
    from kernels.layer.layer import _validate_layer
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

    _validate_layer(check_cls=Gemma3RMSNorm, cls=kernel.layers.GemmaRMSNorm, repo="rmsnorm")

    class DecoderNorm(torch.nn.Module):  # an engine's fused norm
        def forward(self, x, residual):
            return x, residual

    _validate_layer(check_cls=DecoderNorm, cls=kernel.layers.FusedAddRMSNorm, repo="rmsnorm")
