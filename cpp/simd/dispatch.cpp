// The dispatcher of simd_dispatch.hpp: which kernel table runs. Compiled with the baseline flags.
//
// Pure C++: no pybind11 here.
#include "volfast/simd_dispatch.hpp"

#include <atomic>
#include <stdexcept>
#include <string>

namespace volfast::simd {

namespace {

constexpr const char* kNames[kLevels] = {"scalar", "avx2", "avx512"};

const Kernels* table(int level) {
  switch (level) {
    case kScalar:
      return &kernels::scalar();
#if defined(VOLFAST_KERNEL_AVX2)
    case kAvx2:
      return &kernels::avx2();
#endif
#if defined(VOLFAST_KERNEL_AVX512)
    case kAvx512:
      return &kernels::avx512();
#endif
    default:
      return nullptr;
  }
}

// -1 until the first use picks best_level().
std::atomic<int> g_level{-1};

}  // namespace

const char* level_name(int level) { return level >= 0 && level < kLevels ? kNames[level] : "unknown"; }

bool level_compiled(int level) { return table(level) != nullptr; }

bool level_supported(int level) {
  if (!level_compiled(level)) return false;
  if (level == kScalar) return true;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (level == kAvx2) return avx2;
  if (level == kAvx512)
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
#endif
  return false;
}

int best_level() {
  for (int level = kLevels - 1; level > kScalar; --level)
    if (level_supported(level)) return level;
  return kScalar;
}

int active_level() {
  int level = g_level.load(std::memory_order_acquire);
  if (level < 0) {
    int expected = -1;
    const int best = best_level();
    g_level.compare_exchange_strong(expected, best, std::memory_order_acq_rel);
    level = g_level.load(std::memory_order_acquire);
  }
  return level;
}

const Kernels& active() { return *table(active_level()); }

void set_level(const std::string& name) {
  if (name == "auto" || name.empty()) {
    g_level.store(best_level(), std::memory_order_release);
    return;
  }
  for (int level = 0; level < kLevels; ++level) {
    if (name != kNames[level]) continue;
    if (!level_compiled(level))
      throw std::invalid_argument("SIMD level " + name + " is not in this build of volfast._core (not an x86-64 " +
                                  "GCC/Clang build); use auto or scalar");
    if (!level_supported(level))
      throw std::invalid_argument("SIMD level " + name + " is not supported by this CPU (the best level here is " +
                                  kNames[best_level()] + ")");
    g_level.store(level, std::memory_order_release);
    return;
  }
  throw std::invalid_argument("unknown SIMD level '" + name + "' (expected auto, scalar, avx2 or avx512)");
}

}  // namespace volfast::simd
