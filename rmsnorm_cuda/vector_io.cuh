#pragma once

// Aligned vectors of N elements, so that a thread moves 16 bytes of a bf16,
// fp16 or fp32 row with one instruction (LDG.128 / STG.128).

#include <cstdint>

namespace rmsnorm {

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// Moves a vector as raw 16-byte words (8, 4 or 2 bytes when smaller). Copying
// the struct of c10::BFloat16/Half element by element lets the compiler split
// the access into 2-byte stores (seen in the PTX of the chunked kernel).
template <int kBytes>
__device__ __forceinline__ void copy_words(void* dst, const void* src) {
  if constexpr (kBytes % 16 == 0) {
#pragma unroll
    for (int i = 0; i < kBytes / 16; ++i) {
      static_cast<uint4*>(dst)[i] = static_cast<const uint4*>(src)[i];
    }
  } else if constexpr (kBytes == 8) {
    *static_cast<uint2*>(dst) = *static_cast<const uint2*>(src);
  } else if constexpr (kBytes == 4) {
    *static_cast<uint32_t*>(dst) = *static_cast<const uint32_t*>(src);
  } else {
    static_assert(kBytes == 2, "vectors are 2, 4, 8 or a multiple of 16 bytes");
    *static_cast<uint16_t*>(dst) = *static_cast<const uint16_t*>(src);
  }
}

template <typename T, int N>
__device__ __forceinline__ Vec<T, N> load_vec(const T* ptr) {
  Vec<T, N> value;
  copy_words<sizeof(Vec<T, N>)>(&value, ptr);
  return value;
}

// Through the read-only (non-coherent) data path: for tensors no thread of
// the kernel writes. The kernels take no __restrict__ pointers (the in-place
// fused op aliases them), so the compiler will not choose this path itself.
template <typename T, int N>
__device__ __forceinline__ Vec<T, N> load_vec_readonly(const T* ptr) {
  if constexpr (sizeof(Vec<T, N>) % 16 == 0) {
    Vec<T, N> value;
#pragma unroll
    for (int i = 0; i < int(sizeof(Vec<T, N>) / 16); ++i) {
      reinterpret_cast<uint4*>(&value)[i] = __ldg(reinterpret_cast<const uint4*>(ptr) + i);
    }
    return value;
  } else {
    return load_vec<T, N>(ptr);
  }
}

// L2 eviction priority for a load (createpolicy + ld.global.L2::cache_hint):
// evict_last keeps lines that are read again soon, evict_first lets lines
// read for the last time leave first.
enum class L2Priority { kEvictLast, kEvictFirst };
template <L2Priority kPriority>
__device__ __forceinline__ uint64_t l2_policy() {
  uint64_t policy;
  if constexpr (kPriority == L2Priority::kEvictLast) {
    asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
  } else {
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  }
  return policy;
}
// (volatile: a second load of the same address after a barrier must not be
// merged with the first.)
template <int kBytes>
__device__ __forceinline__ void load_words_with_policy(uint32_t* dst, const void* src, uint64_t policy) {
  if constexpr (kBytes == 16) {
    asm volatile("ld.global.L2::cache_hint.v4.b32 {%0, %1, %2, %3}, [%4], %5;"
                 : "=r"(dst[0]), "=r"(dst[1]), "=r"(dst[2]), "=r"(dst[3])
                 : "l"(src), "l"(policy));
  } else {
    static_assert(kBytes == 8, "8 or 16 bytes");
    asm volatile("ld.global.L2::cache_hint.v2.b32 {%0, %1}, [%2], %3;"
                 : "=r"(dst[0]), "=r"(dst[1])
                 : "l"(src), "l"(policy));
  }
}

// N elements of T as 32-bit words, two 16-bit elements to a word. An array
// of Vec<T, N> of bf16/fp16 held across a kernel may take a register per
// element (the ATen-order register kernel spilled at 32 groups of 4 bf16 per
// thread); words keep the elements packed.
template <typename T, int N>
struct PackedVec {
  static_assert(N * sizeof(T) % 4 == 0, "whole 32-bit words");
  static constexpr int kWords = int(N * sizeof(T) / 4);
  uint32_t words[kWords];
  __device__ __forceinline__ static PackedVec load(const T* ptr) {
    PackedVec packed;
    copy_words<int(sizeof(T)) * N>(packed.words, ptr);
    return packed;
  }
  __device__ __forceinline__ static PackedVec load_with_policy(const T* ptr, uint64_t policy) {
    PackedVec packed;
    load_words_with_policy<kWords * 4>(packed.words, ptr, policy);
    return packed;
  }
  // Through the read-only data path (see load_vec_readonly).
  __device__ __forceinline__ static PackedVec load_readonly(const T* ptr) {
    if constexpr (kWords % 4 == 0) {
      PackedVec packed;
#pragma unroll
      for (int i = 0; i < kWords / 4; ++i) {
        const uint4 word4 = __ldg(reinterpret_cast<const uint4*>(ptr) + i);
        packed.words[4 * i] = word4.x;
        packed.words[4 * i + 1] = word4.y;
        packed.words[4 * i + 2] = word4.z;
        packed.words[4 * i + 3] = word4.w;
      }
      return packed;
    } else {
      return load(ptr);
    }
  }
  // The N elements that start `shift` (0 <= shift < N) elements past the
  // aligned vector at `aligned`, from that vector and the next: two aligned
  // loads and a funnel shift, where element loads would take N
  // instructions. Reads nothing past the vector that holds the last element
  // wanted: at shift 0 the second load reads the first vector again (an L1
  // hit; a branch around it cost the odd-row kernel a branch per group).
  __device__ __forceinline__ static PackedVec load_shifted(const T* aligned, int shift) {
    uint32_t both[2 * kWords];
    const PackedVec low = load(aligned);
    const PackedVec high = load(aligned + (shift > 0 ? N : 0));
#pragma unroll
    for (int i = 0; i < kWords; ++i) {
      both[i] = low.words[i];
      both[kWords + i] = high.words[i];
    }
    const int bits = shift * int(sizeof(T)) * 8;
    const int word_shift = bits / 32;
    // Whole words by selects, one power of two at a time (indices stay
    // compile-time constants: registers, not local memory), then the rest
    // of a word (16-bit elements) by a funnel shift.
#pragma unroll
    for (int step = 1; step < kWords; step *= 2) {
      const bool take = (word_shift & step) != 0;
#pragma unroll
      for (int i = 0; i + step < 2 * kWords; ++i) both[i] = take ? both[i + step] : both[i];
    }
    PackedVec packed;
#pragma unroll
    for (int i = 0; i < kWords; ++i) packed.words[i] = __funnelshift_r(both[i], both[i + 1], bits % 32);
    return packed;
  }
  // The N elements that start kShift elements into the pair (low, high)
  // (0 < kShift < N), the shift known at compile time: whole words are
  // register picks, the rest one funnel shift per word.
  template <int kShift>
  __device__ __forceinline__ static PackedVec from_pair(const PackedVec& low, const PackedVec& high) {
    static_assert(0 < kShift && kShift < N, "a shift within the vector");
    constexpr int kBits = kShift * int(sizeof(T)) * 8;
    uint32_t both[2 * kWords];
#pragma unroll
    for (int i = 0; i < kWords; ++i) {
      both[i] = low.words[i];
      both[kWords + i] = high.words[i];
    }
    PackedVec packed;
#pragma unroll
    for (int i = 0; i < kWords; ++i) {
      if constexpr (kBits % 32 == 0) {
        packed.words[i] = both[i + kBits / 32];
      } else {
        packed.words[i] = __funnelshift_r(both[i + kBits / 32], both[i + kBits / 32 + 1], kBits % 32);
      }
    }
    return packed;
  }
  __device__ __forceinline__ static PackedVec of(const Vec<T, N>& value) {
    PackedVec packed;
    memcpy(packed.words, &value, sizeof(packed.words));
    return packed;
  }
  __device__ __forceinline__ Vec<T, N> vec() const {
    Vec<T, N> value;
    memcpy(&value, words, sizeof(words));
    return value;
  }
};

template <typename T>
__device__ __forceinline__ uint32_t bits_of_pair(const T& lo, const T& hi) {
  return uint32_t(lo.x) | (uint32_t(hi.x) << 16);  // c10::BFloat16 / c10::Half
}

// 16-byte stores are written as one st.global.v4 in inline PTX. nvcc 13 merged
// the vector store of a full chunk with the element stores of the edge-chunk
// path and emitted 4-byte (or 2-byte) stores for both, halving bf16 bandwidth.
__device__ __forceinline__ void store_16_bytes(void* ptr, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(ptr), "r"(a), "r"(b), "r"(c), "r"(d)
               : "memory");
}

template <typename T, int N>
__device__ __forceinline__ void store_vec(T* ptr, const Vec<T, N>& value) {
  if constexpr (sizeof(T) == 2 && N % 8 == 0) {
#pragma unroll
    for (int q = 0; q < N / 8; ++q) {
      const T* v = value.v + 8 * q;
      store_16_bytes(ptr + 8 * q, bits_of_pair(v[0], v[1]), bits_of_pair(v[2], v[3]),
                     bits_of_pair(v[4], v[5]), bits_of_pair(v[6], v[7]));
    }
  } else if constexpr (sizeof(T) == 4 && N % 4 == 0) {
#pragma unroll
    for (int q = 0; q < N / 4; ++q) {
      const T* v = value.v + 4 * q;
      store_16_bytes(ptr + 4 * q, __float_as_uint(v[0]), __float_as_uint(v[1]), __float_as_uint(v[2]),
                     __float_as_uint(v[3]));
    }
  } else {
    copy_words<sizeof(Vec<T, N>)>(ptr, &value);
  }
}

template <typename T>
__host__ __device__ inline bool is_aligned(const T* ptr, int64_t bytes) {
  return reinterpret_cast<std::uintptr_t>(ptr) % bytes == 0;
}

}  // namespace rmsnorm
