#pragma once

// Where an RMSNorm rounds, as the op's `order` argument (an int in the op
// schema). transformers ships three orders under the same "RMSNorm" name; a
// kernel that used one for all would shift the others by a rounding step.
//
//   kLlama: y = weight * T(x * r)             Llama, Mistral, Qwen2/3, Phi3, ...
//           (normalized row rounded to the input dtype T first; the product in
//           the promoted dtype of weight and T)
//   kOlmo:  y = T(float(weight) * (x * r))    Olmo2/3, GptOss, DeepseekV4, ...
//   kGemma: y = T((1 + float(weight)) * (x * r))   Gemma, Gemma2, Gemma3
//
// with x in fp32 and r = rsqrt(mean(x^2) + eps). Without a weight all three
// are T(x * r).

#include <cstdint>

namespace rmsnorm {

enum class NormOrder : int {
  kLlama = 0,
  kOlmo = 1,
  kGemma = 2,
};

inline bool is_valid_order(int64_t order) { return order >= 0 && order <= 2; }

}  // namespace rmsnorm
