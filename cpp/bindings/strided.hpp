// Binding-side helpers: validate numpy arrays and read them through their strides.
// Inputs may be read-only and non-contiguous (DBN columns are strided views); nothing here writes to them.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace volfast::bind {

namespace py = pybind11;

// A 1-D strided view of a numpy array (stride 0 broadcasts one value).
template <class T>
struct Strided {
  const char* ptr = nullptr;
  py::ssize_t stride = 0;
  T operator[](std::int64_t i) const {
    T v;
    std::memcpy(&v, ptr + i * stride, sizeof(T));  // alignment-safe: DBN records may be packed
    return v;
  }
};

template <class T>
Strided<T> strided(const py::array& a, const char* name, py::ssize_t n) {
  if (a.ndim() != 1)
    throw py::value_error(std::string(name) + ": expected a 1-D array, got " + std::to_string(a.ndim()) + "-D");
  if (a.shape(0) != n)
    throw py::value_error(std::string(name) + ": length " + std::to_string(a.shape(0)) + " does not match " +
                          std::to_string(n));
  if (!a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  return Strided<T>{static_cast<const char*>(a.data()), a.strides(0)};
}

inline py::ssize_t length_of(const py::array& a, const char* name) {
  if (a.ndim() != 1)
    throw py::value_error(std::string(name) + ": expected a 1-D array, got " + std::to_string(a.ndim()) + "-D");
  return a.shape(0);
}

}  // namespace volfast::bind
