"""Workloads for `kernels benchmark`, one per regime, all bf16:

    decode      1 x 4096       one token: launch- and latency-bound
    prefill     4096 x 4096    bandwidth-bound (67 MB moved per call)
    qk_norm     65536 x 128    Qwen3-style per-head q/k norm: many short rows
    odd_hidden  8192 x 4097    no 16-byte vector path for the rows

Run from the repository root after a build:

    kernels benchmark . --warmup 10 --iterations 100

The runner (kernels 0.17.2) loads the kernel with get_local_kernel, calls
setup_<w>, checks benchmark_<w>'s `self.out` against verify_<w>'s tensor with
torch.allclose(atol=1e-2), then times benchmark_<w> with a host clock and a
synchronize per call (launch cost included). The CUDA-graph, L2-flushed
comparison against other implementations is bench_rmsnorm.py.
"""

import torch
from kernels.benchmark import Benchmark

EPS = 1e-6


def llama_rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF LlamaRMSNorm's order: fp32 statistics, round the normalised row to
    x's dtype, then multiply by the weight in the weight's dtype."""
    xf = x.float()
    normalized = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * normalized.to(x.dtype)


class RMSNormBenchmark(Benchmark):
    seed = 42

    def _setup_rows(self, rows: int, hidden: int) -> None:
        dtype = torch.bfloat16
        # rms 3, not 1: with unit-rms rows a kernel that skipped the
        # normalisation would still pass the check.
        self.x = 3 * torch.randn(rows, hidden, device=self.device, dtype=dtype)
        # The runner's check is allclose(atol=1e-2) with rtol 1e-5, tighter
        # than one bf16 ulp for |y| >= 2 (2^-6). A last-bit flip of the
        # rounded x*rstd (another fp32 summation order than torch's) is
        # legitimate, so keep |y| < 1: with |x*rstd| < 8 (randn rows) and
        # weight <= 0.12, a flip (<= 2^-5) moves w*x*rstd by < 2^-8 before the
        # final rounding, so y moves by < 2^-8 + one ulp of y, under 0.008.
        # This check catches wrong maths, not the casting order: bitwise
        # parity with HF is tests/test_numerics.py's job.
        self.weight = torch.empty(hidden, device=self.device, dtype=torch.float32).uniform_(0.05, 0.12).to(dtype)
        self.out = torch.empty_like(self.x)

    def _run(self) -> None:
        self.kernel.rms_norm(self.x, self.weight, EPS, out=self.out)

    def _reference(self) -> torch.Tensor:
        return llama_rms_norm_reference(self.x, self.weight, EPS)

    # decode: one token of a 4096-wide model (Llama-3-8B, Mistral-7B)
    def setup_decode(self):
        self._setup_rows(1, 4096)

    def benchmark_decode(self):
        self._run()

    def verify_decode(self) -> torch.Tensor:
        return self._reference()

    # prefill: 4096 tokens at hidden 4096
    def setup_prefill(self):
        self._setup_rows(4096, 4096)

    def benchmark_prefill(self):
        self._run()

    def verify_prefill(self) -> torch.Tensor:
        return self._reference()

    # qk_norm: 512 tokens x 128 heads of head_dim 128, normalised per head
    def setup_qk_norm(self):
        self._setup_rows(65536, 128)

    def benchmark_qk_norm(self):
        self._run()

    def verify_qk_norm(self) -> torch.Tensor:
        return self._reference()

    # odd_hidden: a width that is not a multiple of 8 elements
    def setup_odd_hidden(self):
        self._setup_rows(8192, 4097)

    def benchmark_odd_hidden(self):
        self._run()

    def verify_odd_hidden(self) -> torch.Tensor:
        return self._reference()
