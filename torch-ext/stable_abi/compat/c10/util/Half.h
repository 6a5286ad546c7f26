#pragma once
// Stable-ABI build: the ATen names the kernels use, from torch-ext/stable_abi/aten_compat.h.
#include "../../../aten_compat.h"
