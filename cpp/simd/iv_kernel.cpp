// The hot kernels, compiled once per SIMD level (CMakeLists.txt: one object library per level, each with its
// -m flags, VOLFAST_KERNEL_LEVEL and its own VOLFAST_ARCH namespace for the numeric headers).
//
// Only the numeric headers and <cstring> are included here: nothing whose code could be shared with the
// baseline translation units under the same symbol (see arch.hpp).
//
// Pure C++: no pybind11 here.
#include <cstdint>
#include <cstring>

#include "volfast/black76.hpp"
#include "volfast/implied_vol.hpp"
#include "volfast/implied_vol_batch.hpp"
#include "volfast/simd_dispatch.hpp"

#ifndef VOLFAST_KERNEL_LEVEL
#error "VOLFAST_KERNEL_LEVEL must be 0 (scalar), 1 (avx2) or 2 (avx512)"
#endif

namespace volfast::simd {
namespace {

inline double f64_at(const Column& c, std::int64_t i) {
  double v;
  std::memcpy(&v, c.ptr + i * c.stride, sizeof v);  // alignment-safe: columns may be packed record fields
  return v;
}

inline bool bool_at(const Column& c, std::int64_t i) { return c.ptr[i * c.stride] != 0; }

void implied_vol_range(const IVColumns& in, std::int64_t begin, std::int64_t end, double* iv, std::uint8_t* status,
                       std::uint8_t* iterations, bool batched) {
  if (batched) {
    const auto load = [&in](std::int64_t i, double& p, double& F, double& K, double& T, bool& c, double& D) {
      p = f64_at(in.price, i);
      F = f64_at(in.forward, i);
      K = f64_at(in.strike, i);
      T = f64_at(in.expiry, i);
      c = bool_at(in.is_call, i);
      D = f64_at(in.discount, i);
    };
    volfast::implied_vol_batch(load, begin, end, iv + begin, status + begin,
                               iterations ? iterations + begin : nullptr);
    return;
  }
  for (std::int64_t i = begin; i < end; ++i) {
    volfast::IVStatus st;
    int nit;
    iv[i] = volfast::implied_vol(f64_at(in.price, i), f64_at(in.forward, i), f64_at(in.strike, i),
                                 f64_at(in.expiry, i), bool_at(in.is_call, i), f64_at(in.discount, i), st, nit);
    status[i] = st;
    if (iterations) iterations[i] = static_cast<std::uint8_t>(nit);
  }
}

void price_range(const IVColumns& in, const Column& vol, std::int64_t begin, std::int64_t end, double* out) {
  for (std::int64_t i = begin; i < end; ++i)
    out[i] = volfast::black_price(f64_at(in.forward, i), f64_at(in.strike, i), f64_at(in.expiry, i),
                                  f64_at(vol, i), bool_at(in.is_call, i), f64_at(in.discount, i));
}

void lane_math(int which, const double* in, double* out, std::int64_t n) {
  constexpr int B = lane::kBlock;
  alignas(64) double buf[B];
  for (std::int64_t b0 = 0; b0 < n; b0 += B) {
    const int nb = static_cast<int>(n - b0 < B ? n - b0 : B);
    for (int j = 0; j < B; ++j) buf[j] = j < nb ? in[b0 + j] : 1.0;
    if (which == 0) {
#pragma omp simd
      for (int j = 0; j < B; ++j) buf[j] = lane::exp_lane(buf[j]);
    } else if (which == 1) {
#pragma omp simd
      for (int j = 0; j < B; ++j) buf[j] = lane::log_pos(buf[j]);
    } else {
      lane::erfcx_block(buf);
    }
    for (int j = 0; j < nb; ++j) out[b0 + j] = buf[j];
  }
}

}  // namespace

namespace kernels {
#if VOLFAST_KERNEL_LEVEL == 0
const Kernels& scalar() {
  static const Kernels k{"scalar", &implied_vol_range, &price_range, &lane::transcendental_floor, &lane_math};
  return k;
}
#elif VOLFAST_KERNEL_LEVEL == 1
const Kernels& avx2() {
  static const Kernels k{"avx2", &implied_vol_range, &price_range, &lane::transcendental_floor, &lane_math};
  return k;
}
#elif VOLFAST_KERNEL_LEVEL == 2
const Kernels& avx512() {
  static const Kernels k{"avx512", &implied_vol_range, &price_range, &lane::transcendental_floor, &lane_math};
  return k;
}
#else
#error "unknown VOLFAST_KERNEL_LEVEL"
#endif
}  // namespace kernels

}  // namespace volfast::simd
