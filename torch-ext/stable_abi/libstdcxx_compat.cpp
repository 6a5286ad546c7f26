// manylinux_2_28 for the stable-ABI binaries.
//
// torch's header-only error helpers (STD_TORCH_CHECK's message in
// torch/headeronly/util/Exception.h, TORCH_ERROR_CODE_CHECK's in
// shim_utils.h) default-construct std::ostringstream / std::stringstream. With
// libstdc++ from GCC 9 on, that is a call to the default constructors added in
// GLIBCXX_3.4.26, which the libstdc++ of a manylinux_2_28 system (GCC 8,
// GLIBCXX_3.4.25) does not have; kernel-abi-check rejects the binary. (The
// regular variants never reference them: TORCH_CHECK formats through libc10.)
//
// Those constructors are defined by the standard library as delegating to the
// open-mode constructor with the default mode; this file defines the two
// symbols so, inside the extension (hidden: never exported), so the linker
// binds the calls here instead of importing the 3.4.26 versions.

#include <new>
#include <sstream>

#define RMSNORM_HIDDEN __attribute__((visibility("hidden")))

RMSNORM_HIDDEN void rmsnorm_default_stringstream(std::stringstream* self) asm(
    "_ZNSt7__cxx1118basic_stringstreamIcSt11char_traitsIcESaIcEEC1Ev");
RMSNORM_HIDDEN void rmsnorm_default_ostringstream(std::ostringstream* self) asm(
    "_ZNSt7__cxx1119basic_ostringstreamIcSt11char_traitsIcESaIcEEC1Ev");

void rmsnorm_default_stringstream(std::stringstream* self) {
  new (self) std::stringstream(std::ios_base::in | std::ios_base::out);
}

void rmsnorm_default_ostringstream(std::ostringstream* self) {
  new (self) std::ostringstream(std::ios_base::out);
}
