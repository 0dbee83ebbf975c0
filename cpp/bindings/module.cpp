// volfast._core: the one compiled extension. Each area registers itself on its own submodule.
#include <pybind11/pybind11.h>

#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "volfast/parallel.hpp"
#include "volfast/simd_dispatch.hpp"

namespace py = pybind11;

void register_black76(py::module_ m);
void register_snapshot(py::module_ m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "volfast compiled core (C++17, pybind11). Use the Python API in volfast instead.";
  m.attr("__version__") = VOLFAST_VERSION;
  m.attr("__git_describe__") = VOLFAST_GIT_DESCRIBE;  // the source tree at build time (CMakeLists.txt)
  m.def("hardware_threads", &volfast::hardware_threads, "Threads the C++ core uses when asked for 0.");
  namespace vs = volfast::simd;
  m.def(
      "simd_level", [] { return std::string(vs::level_name(vs::active_level())); },
      "The SIMD level whose kernels run: 'scalar' (baseline x86-64 / other CPUs), 'avx2' or 'avx512'.");
  m.def(
      "simd_levels",
      [] {
        py::dict out;
        for (int level = 0; level < vs::kLevels; ++level) {
          py::dict d;
          d["compiled"] = vs::level_compiled(level);
          d["supported"] = vs::level_supported(level);
          out[vs::level_name(level)] = d;
        }
        return out;
      },
      "Every SIMD level: whether this build holds its kernels and whether this CPU can run them.");
  m.def(
      "set_simd_level",
      [](const std::string& name) {
        try {
          vs::set_level(name);
        } catch (const std::invalid_argument& e) {
          throw py::value_error(e.what());
        }
        return std::string(vs::level_name(vs::active_level()));
      },
      py::arg("name"),
      "Run the kernels of one level from now on ('auto', 'scalar', 'avx2', 'avx512'); returns the level in use.\n"
      "ValueError for an unknown name or a level this build or CPU cannot run (the level is then unchanged).");
  m.def(
      "simd_best", [] { return std::string(vs::level_name(vs::best_level())); },
      "The best level this build and CPU support (what 'auto' chooses).");
  register_black76(m.def_submodule("black76", "Black-76 price, Greeks and implied volatility"));
  register_snapshot(m.def_submodule("snapshot", "Streaming top-of-book quote snapshot"));
}
