// volfast._core: the one compiled extension. Each area registers itself on its own submodule.
#include <pybind11/pybind11.h>

#include "volfast/parallel.hpp"

namespace py = pybind11;

void register_black76(py::module_ m);
void register_snapshot(py::module_ m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "volfast compiled core (C++17, pybind11). Use the Python API in volfast instead.";
  m.attr("__version__") = VOLFAST_VERSION;
  m.attr("__git_describe__") = VOLFAST_GIT_DESCRIBE;  // the source tree at build time (CMakeLists.txt)
  m.def("hardware_threads", &volfast::hardware_threads, "Threads the C++ core uses when asked for 0.");
#if defined(__AVX512F__)
  m.attr("SIMD") = "avx512";
#elif defined(__AVX2__)
  m.attr("SIMD") = "avx2";
#else
  m.attr("SIMD") = "baseline";
#endif
  register_black76(m.def_submodule("black76", "Black-76 price, Greeks and implied volatility"));
  register_snapshot(m.def_submodule("snapshot", "Streaming top-of-book quote snapshot"));
}
