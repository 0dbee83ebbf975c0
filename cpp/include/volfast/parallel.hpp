// Thread helper: split [0, n) into contiguous chunks, one per worker thread.
// Pure C++ (no Python): the bindings release the GIL around calls into it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace volfast {

// Below this many elements per thread, starting threads costs more than it saves.
constexpr std::int64_t kMinGrainPerThread = 16384;

inline int hardware_threads() {
  const unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

// Run fn(begin, end) over [0, n) on up to `threads` threads (threads <= 0 means all hardware threads).
// The calling thread takes the first chunk. Exceptions in workers are rethrown on the caller.
template <class Fn>
void parallel_for(std::int64_t n, int threads, Fn&& fn, std::int64_t min_grain = kMinGrainPerThread) {
  if (n <= 0) return;
  if (threads <= 0) threads = hardware_threads();
  const std::int64_t by_grain = std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, min_grain));
  const int nt = static_cast<int>(std::min<std::int64_t>(threads, by_grain));
  if (nt <= 1) {
    fn(std::int64_t{0}, n);
    return;
  }
  const std::int64_t chunk = (n + nt - 1) / nt;
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(nt));
  pool.reserve(static_cast<std::size_t>(nt - 1));
  for (int w = 1; w < nt; ++w) {
    const std::int64_t b = w * chunk, e = std::min(n, b + chunk);
    if (b >= e) break;
    pool.emplace_back([&, w, b, e] {
      try {
        fn(b, e);
      } catch (...) {
        errors[static_cast<std::size_t>(w)] = std::current_exception();
      }
    });
  }
  try {
    fn(std::int64_t{0}, std::min(n, chunk));
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace volfast
