// Python bindings for Black-76 pricing, Greeks and implied volatility (volfast._core.black76).
// Arrays are validated with the GIL held; the numeric loops run with it released, over threads.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "strided.hpp"
#include "volfast/black76.hpp"
#include "volfast/implied_vol.hpp"  // IVStatus, kMaxIterations
#include "volfast/parallel.hpp"
#include "volfast/simd_dispatch.hpp"

namespace py = pybind11;
using volfast::bind::Strided;
using volfast::bind::strided;

namespace {

using F64 = py::array_t<double>;
using U8 = py::array_t<std::uint8_t>;

// Elementwise map over n quotes: fn(i) -> double, written to a fresh float64 array.
template <class Fn>
F64 map_f64(py::ssize_t n, int threads, Fn fn) {
  F64 out(n);
  double* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    volfast::parallel_for(n, threads, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) o[i] = fn(i);
    });
  }
  return out;
}

// The five market inputs every pricing function takes, validated once.
struct Market {
  Strided<double> f, k, t, v, d;
  Market(const py::array& F, const py::array& K, const py::array& T, const py::array& vol, const py::array& D,
         py::ssize_t n)
      : f(strided<double>(F, "forward", n)),
        k(strided<double>(K, "strike", n)),
        t(strided<double>(T, "expiry_years", n)),
        v(strided<double>(vol, "vol", n)),
        d(strided<double>(D, "discount_factor", n)) {}
};

// A strided float64 / bool column for the SIMD kernels (the binding checked its dtype and length).
template <class T>
volfast::simd::Column column(const Strided<T>& a) {
  return {a.ptr, static_cast<std::int64_t>(a.stride)};
}

F64 price_py(const py::array& F, const py::array& K, const py::array& T, const py::array& vol,
             const py::array& is_call, const py::array& D, int threads) {
  const auto n = volfast::bind::length_of(F, "forward");
  const Market m(F, K, T, vol, D, n);
  auto c = strided<bool>(is_call, "is_call", n);
  const volfast::simd::IVColumns in{{}, column(m.f), column(m.k), column(m.t), column(c), column(m.d)};
  const volfast::simd::Column v = column(m.v);
  const volfast::simd::Kernels& kern = volfast::simd::active();
  F64 out(n);
  double* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    volfast::parallel_for(n, threads, [&](std::int64_t b, std::int64_t e) { kern.price(in, v, b, e, o); });
  }
  return out;
}

F64 vega_py(const py::array& F, const py::array& K, const py::array& T, const py::array& vol, const py::array& D,
            int threads) {
  const auto n = volfast::bind::length_of(F, "forward");
  const Market m(F, K, T, vol, D, n);
  return map_f64(n, threads, [=](std::int64_t i) { return volfast::black_vega(m.f[i], m.k[i], m.t[i], m.v[i], m.d[i]); });
}

F64 delta_py(const py::array& F, const py::array& K, const py::array& T, const py::array& vol,
             const py::array& is_call, const py::array& D, int threads) {
  const auto n = volfast::bind::length_of(F, "forward");
  const Market m(F, K, T, vol, D, n);
  auto c = strided<bool>(is_call, "is_call", n);
  return map_f64(n, threads, [=](std::int64_t i) { return volfast::black_delta(m.f[i], m.k[i], m.t[i], m.v[i], c[i], m.d[i]); });
}

F64 gamma_py(const py::array& F, const py::array& K, const py::array& T, const py::array& vol, const py::array& D,
             int threads) {
  const auto n = volfast::bind::length_of(F, "forward");
  const Market m(F, K, T, vol, D, n);
  return map_f64(n, threads, [=](std::int64_t i) { return volfast::black_gamma(m.f[i], m.k[i], m.t[i], m.v[i], m.d[i]); });
}

py::tuple implied_vol_py(const py::array& P, const py::array& F, const py::array& K, const py::array& T,
                      const py::array& is_call, const py::array& D, int threads, bool with_iterations,
                          bool batched) {
  const auto n = volfast::bind::length_of(P, "price");
  auto p = strided<double>(P, "price", n), f = strided<double>(F, "forward", n), k = strided<double>(K, "strike", n),
       t = strided<double>(T, "expiry_years", n), d = strided<double>(D, "discount_factor", n);
  auto c = strided<bool>(is_call, "is_call", n);
  F64 iv(n);
  U8 status(n);
  U8 iters(with_iterations ? n : 0);
  double* o = iv.mutable_data();
  std::uint8_t* st = status.mutable_data();
  std::uint8_t* it = with_iterations ? iters.mutable_data() : nullptr;
  const volfast::simd::IVColumns in{column(p), column(f), column(k), column(t), column(c), column(d)};
  const volfast::simd::Kernels& kern = volfast::simd::active();
  {
    py::gil_scoped_release release;
    volfast::parallel_for(n, threads, [&](std::int64_t b, std::int64_t e) {
      kern.implied_vol(in, b, e, o, st, it, batched);
    });
  }
  if (with_iterations) return py::make_tuple(iv, status, iters);
  return py::make_tuple(iv, status);
}

F64 normalised_black_py(const py::array& x, const py::array& s, const py::array& theta, int threads) {
  const auto n = volfast::bind::length_of(x, "x");
  auto xx = strided<double>(x, "x", n), ss = strided<double>(s, "s", n), th = strided<double>(theta, "theta", n);
  return map_f64(n, threads, [=](std::int64_t i) { return volfast::normalised_black(xx[i], ss[i], th[i]); });
}

}  // namespace

void register_black76(py::module_ m) {
  m.doc() = "Black-76 price, Greeks and implied volatility (1-D float64 arrays of equal length, any strides).";
  const auto th = py::arg("threads") = 0;
  m.def("price", &price_py, py::arg("forward"), py::arg("strike"), py::arg("expiry_years"), py::arg("vol"),
        py::arg("is_call"), py::arg("discount_factor"), th);
  m.def("vega", &vega_py, py::arg("forward"), py::arg("strike"), py::arg("expiry_years"), py::arg("vol"),
        py::arg("discount_factor"), th);
  m.def("delta", &delta_py, py::arg("forward"), py::arg("strike"), py::arg("expiry_years"), py::arg("vol"),
        py::arg("is_call"), py::arg("discount_factor"), th);
  m.def("gamma", &gamma_py, py::arg("forward"), py::arg("strike"), py::arg("expiry_years"), py::arg("vol"),
        py::arg("discount_factor"), th);
  m.def("implied_vol", &implied_vol_py, py::arg("price"), py::arg("forward"), py::arg("strike"),
        py::arg("expiry_years"), py::arg("is_call"), py::arg("discount_factor"), th,
        py::arg("with_iterations") = false, py::arg("batched") = true,
        "Returns (iv, status) or, with with_iterations, (iv, status, iterations): the number of accurate\n"
        "Householder steps. batched=True (BATCHED_DEFAULT) solves blocks of quotes with the SIMD kernels of\n"
        "the active level (volfast._core.simd_level()); batched=False runs the scalar solver quote by quote.");
  m.def("normalised_black", &normalised_black_py, py::arg("x"), py::arg("s"), py::arg("theta"), th,
        "Normalised Black price b(x, s, theta) = price / (D sqrt(F K)) with x = ln(F/K), s = vol sqrt(T).");
  m.def(
      "transcendental_floor",
      [](std::int64_t n) {
        const auto& kern = volfast::simd::active();
        py::gil_scoped_release release;
        return kern.transcendental_floor(n);
      },
      py::arg("n"),
      "n quotes' worth of the transcendentals an implied-vol solve needs (6 exp, 4 log, 2 erfc per quote)\n"
      "through the active level's vectorised functions, on one thread; returns a checksum. Time it to get\n"
      "the floor that volfast bench iv reports beside the solver's ns per quote.");
  m.def(
      "lane_math",
      [](const std::string& fn, const py::array_t<double, py::array::c_style | py::array::forcecast>& x) {
        int which = -1;
        if (fn == "exp") which = 0;
        if (fn == "log") which = 1;
        if (fn == "erfcx") which = 2;
        if (which < 0) throw std::invalid_argument("lane_math: unknown function '" + fn + "' (exp, log, erfcx)");
        const auto& kern = volfast::simd::active();
        const auto n = static_cast<std::int64_t>(x.size());
        F64 out(x.size());
        const double* in = x.data();
        double* o = out.mutable_data();
        {
          py::gil_scoped_release release;
          kern.lane_math(which, in, o, n);
        }
        return out;
      },
      py::arg("fn"), py::arg("x"),
      "The active level's vectorised lane functions of the batched solver, elementwise over a 1-D array:\n"
      "'exp' (|x| < 700), 'log' (x > 0, finite) or 'erfcx' (exp(x^2) erfc(x), x >= 0). For tests.");
  m.attr("MAX_ITERATIONS") = volfast::kMaxIterations;
  m.attr("BATCHED_DEFAULT") = true;
}
