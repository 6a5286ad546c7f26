"""One call of each implementation per shape, between cudaProfilerStart and
cudaProfilerStop, for Nsight Compute's ``--profile-from-start off``:

    ncu --profile-from-start off --set full -o REPORT \
        python benchmarks/profile_probe.py ours,liger,compile 65536x128 8192x4097

Implementations: copy (the device-to-device copy of x), ours (get_kernel,
LOCAL_KERNELS as in bench_rmsnorm.py), liger (LigerRMSNorm, llama casting),
compile (torch.compile of HF's LlamaRMSNorm). bf16 rows; each is called
three times before the profiled call (compilation, autotuning, caches).
"""

import sys

import torch


def build_calls(impl, rows, hidden):
    x = torch.randn(rows, hidden, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(hidden, device="cuda", dtype=torch.bfloat16)
    if impl == "copy":
        y = torch.empty_like(x)
        return lambda: y.copy_(x)
    if impl == "ours":
        import kernels

        ours = kernels.get_kernel("kernels-rmsnorm/rmsnorm", version=1)
        return lambda: ours.rms_norm(x, weight, 1e-6)
    if impl == "liger":
        from liger_kernel.transformers.rms_norm import LigerRMSNorm

        module = LigerRMSNorm(hidden, eps=1e-6, casting_mode="llama").cuda().to(torch.bfloat16)
    elif impl == "compile":
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        module = torch.compile(LlamaRMSNorm(hidden, eps=1e-6).cuda().to(torch.bfloat16))
    else:
        raise SystemExit(f"unknown implementation {impl!r}: copy, ours, liger or compile")
    with torch.no_grad():
        (module._orig_mod if hasattr(module, "_orig_mod") else module).weight.copy_(weight)
    return lambda: module(x)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    impls, shapes = argv[0].split(","), argv[1:]
    work = []
    for shape in shapes:
        rows, hidden = (int(v) for v in shape.split("x"))
        for impl in impls:
            call = build_calls(impl, rows, hidden)
            for _ in range(3):
                call()
            work.append((shape, impl, call))
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    for _, _, call in work:
        call()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print("profiled, in order:", [(shape, impl) for shape, impl, _ in work])


if __name__ == "__main__":
    main(sys.argv[1:])
