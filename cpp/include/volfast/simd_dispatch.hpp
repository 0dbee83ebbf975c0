// Run-time SIMD dispatch of the hot kernels.
//
// The kernels of cpp/simd/iv_kernel.cpp are compiled once per instruction-set level into the one extension
// (baseline x86-64 = SSE2, AVX2+FMA, AVX-512 F/DQ/VL/BW), each copy in its own namespace (arch.hpp). The
// dispatcher picks one table of function pointers, once: the best level the CPU supports (CPUID through
// __builtin_cpu_supports, which also checks that the OS saves the wider registers), or the level asked for
// by name. Other architectures and compilers get the baseline level only.
//
// Kernels take [begin, end) ranges and no threads: the binding files split work across threads and call the
// active table's functions per chunk, so nothing from the threading code is ever compiled with wider -m
// flags (see arch.hpp for why that matters).
//
// Pure C++: no pybind11 here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace volfast::simd {

// A 1-D column read through its byte stride (stride 0 broadcasts one value); never written.
struct Column {
  const char* ptr = nullptr;
  std::int64_t stride = 0;
};

// Inputs of implied_vol(): price, forward, strike, expiry_years (float64) and is_call (bool), discount (float64).
struct IVColumns {
  Column price, forward, strike, expiry, is_call, discount;
};

// Implied vols of quotes [begin, end) into iv[i], status[i] and (if not null) iterations[i] (absolute
// indices): batched = the SIMD block solver of implied_vol_batch.hpp, else the scalar solver quote by quote.
using ImpliedVolFn = void (*)(const IVColumns& in, std::int64_t begin, std::int64_t end, double* iv,
                              std::uint8_t* status, std::uint8_t* iterations, bool batched);

// Black-76 prices of quotes [begin, end): the price column is ignored, vol holds the vols.
using PriceFn = void (*)(const IVColumns& in, const Column& vol, std::int64_t begin, std::int64_t end,
                         double* out);

// n quotes' worth of the transcendental functions an implied-vol solve needs, vectorised (a checksum).
using FloorFn = double (*)(std::int64_t n);

// The vectorised functions of implied_vol_batch.hpp's lanes, out[i] = f(in[i]) for i < n, so that tests can
// check each level's own copies against high-precision values: which = 0 exp_lane, 1 log_pos, 2 erfcx_block.
using LaneMathFn = void (*)(int which, const double* in, double* out, std::int64_t n);

struct Kernels {
  const char* name;  // "scalar", "avx2" or "avx512"
  ImpliedVolFn implied_vol;
  PriceFn price;
  FloorFn transcendental_floor;
  LaneMathFn lane_math;
};

enum Level : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
constexpr int kLevels = 3;

// The levels' names, in order: "scalar", "avx2", "avx512".
const char* level_name(int level);
// Whether this build holds the level's kernels (x86-64 with GCC or Clang: all three).
bool level_compiled(int level);
// Whether this CPU (and OS) can run the level.
bool level_supported(int level);
// The best level that is compiled and supported.
int best_level();
// The active kernels: the best level until set_level() chooses another.
const Kernels& active();
int active_level();
// Choose a level by name ("auto" = best_level()). Throws std::invalid_argument, one line naming the setting,
// for an unknown name or a level this build or CPU cannot run; the active level is then unchanged.
void set_level(const std::string& name);

}  // namespace volfast::simd

// Each kernel translation unit defines one of these (cpp/simd/iv_kernel.cpp with VOLFAST_KERNEL_LEVEL).
namespace volfast::simd::kernels {
const Kernels& scalar();
const Kernels& avx2();
const Kernels& avx512();
}  // namespace volfast::simd::kernels
