// Python bindings for the streaming quote-snapshot reducer (volfast._core.snapshot).
// Arrays are validated with the GIL held (length, 1-D, exact dtype); the record loop runs with it released.
// Inputs are read through their strides, so the fields of a read-only DBN structured array can be passed as-is.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "strided.hpp"
#include "volfast/snapshot.hpp"

namespace py = pybind11;
using volfast::bind::Strided;
using volfast::bind::strided;
namespace vs = volfast::snapshot;

namespace {

const std::uint16_t kZeroPublisher = 0;

class PyReducer {
 public:
  PyReducer(std::uint64_t cut_ns, std::uint64_t lookback_ns, bool by_venue) : r_(cut_ns, lookback_ns, by_venue) {}

  void update(const py::array& ts_recv, const py::array& instrument_id, const py::array& bid_px,
              const py::array& ask_px, const py::array& bid_sz, const py::array& ask_sz,
              const py::object& publisher_id) {
    const auto n = volfast::bind::length_of(ts_recv, "ts_recv");
    auto ts = strided<std::uint64_t>(ts_recv, "ts_recv", n);
    auto iid = strided<std::uint32_t>(instrument_id, "instrument_id", n);
    auto bp = strided<std::int64_t>(bid_px, "bid_px", n);
    auto ap = strided<std::int64_t>(ask_px, "ask_px", n);
    auto bs = strided<std::uint32_t>(bid_sz, "bid_sz", n);
    auto as = strided<std::uint32_t>(ask_sz, "ask_sz", n);
    Strided<std::uint16_t> pub{reinterpret_cast<const char*>(&kZeroPublisher), 0};
    if (!publisher_id.is_none()) {
      if (!py::isinstance<py::array>(publisher_id))
        throw py::type_error("publisher_id: expected a numpy array of uint16 or None");
      pub = strided<std::uint16_t>(publisher_id.cast<py::array>(), "publisher_id", n);
    } else if (r_.by_venue()) {
      throw py::value_error("publisher_id is required when the reducer consolidates venues (by_venue=True)");
    }
    // The arrays stay referenced by the caller's frame for the duration of the call, so releasing the GIL
    // cannot free them. A second thread entering the same reducer would race on its table: refuse it.
    if (busy_.exchange(true)) throw std::runtime_error("Reducer.update called concurrently on the same reducer");
    {
      py::gil_scoped_release release;
      r_.update(n, ts, iid, bp, ap, bs, as, pub);
    }
    busy_.store(false);
  }

  py::dict result() const {
    if (busy_.load()) throw std::runtime_error("Reducer.result called while update is running");
    std::vector<vs::Row> rows;
    {
      py::gil_scoped_release release;
      rows = r_.finish();
    }
    const auto n = static_cast<py::ssize_t>(rows.size());
    py::array_t<std::uint32_t> iid(n), bsz(n), asz(n);
    py::array_t<std::int64_t> bpx(n), apx(n);
    py::array_t<std::uint64_t> ts(n);
    py::array_t<std::uint16_t> nv(n);
    py::array_t<bool> hq(n);
    auto* p_iid = iid.mutable_data();
    auto* p_bsz = bsz.mutable_data();
    auto* p_asz = asz.mutable_data();
    auto* p_bpx = bpx.mutable_data();
    auto* p_apx = apx.mutable_data();
    auto* p_ts = ts.mutable_data();
    auto* p_nv = nv.mutable_data();
    auto* p_hq = hq.mutable_data();
    for (py::ssize_t i = 0; i < n; ++i) {
      const auto& r = rows[static_cast<std::size_t>(i)];
      p_iid[i] = r.instrument_id;
      p_bpx[i] = r.bid_px;
      p_apx[i] = r.ask_px;
      p_bsz[i] = r.bid_sz;
      p_asz[i] = r.ask_sz;
      p_ts[i] = r.ts_recv;
      p_nv[i] = r.n_venues;
      p_hq[i] = r.has_quote != 0;
    }
    py::dict d;
    d["instrument_id"] = iid;
    d["bid_px"] = bpx;
    d["ask_px"] = apx;
    d["bid_sz"] = bsz;
    d["ask_sz"] = asz;
    d["ts_recv"] = ts;
    d["n_venues"] = nv;
    d["has_quote"] = hq;
    return d;
  }

  py::dict counters() const {
    const auto& c = r_.counters();
    py::dict d;
    d["records"] = c.records;
    d["in_window"] = c.in_window;
    d["after_cut"] = c.after_cut;
    d["before_window"] = c.before_window;
    d["out_of_order"] = c.out_of_order;
    d["min_ts"] = c.records ? py::object(py::int_(c.min_ts)) : py::object(py::none());
    d["max_ts"] = c.records ? py::object(py::int_(c.max_ts)) : py::object(py::none());
    d["keys"] = r_.n_keys();
    return d;
  }

  const vs::Reducer& reducer() const { return r_; }

 private:
  vs::Reducer r_;
  mutable std::atomic<bool> busy_{false};
};

}  // namespace

void register_snapshot(py::module_ m) {
  m.doc() =
      "Streaming top-of-book snapshot over DBN record arrays. Keeps, per instrument (or instrument x venue), the "
      "last quote with cut - lookback <= ts_recv <= cut; later records in file order win ties.";
  m.attr("UNDEF_PRICE") = vs::kUndefPrice;
  py::class_<PyReducer>(m, "Reducer")
      .def(py::init<std::uint64_t, std::uint64_t, bool>(), py::arg("cut_ns"), py::arg("lookback_ns"),
           py::arg("by_venue") = false,
           "cut_ns, lookback_ns: UTC nanoseconds. by_venue: keep one quote per (instrument, publisher_id) and "
           "consolidate to best bid / best offer in result().")
      .def("update", &PyReducer::update, py::arg("ts_recv"), py::arg("instrument_id"), py::arg("bid_px"),
           py::arg("ask_px"), py::arg("bid_sz"), py::arg("ask_sz"), py::arg("publisher_id") = py::none(),
           "Consume one chunk. 1-D arrays of equal length, any strides, read-only is fine: ts_recv uint64, "
           "instrument_id uint32, bid_px/ask_px int64 (fixed 1e-9, UNDEF_PRICE = missing), bid_sz/ask_sz "
           "uint32, publisher_id uint16 or None.")
      .def("result", &PyReducer::result,
           "Dict of arrays, one row per instrument sorted by instrument_id: instrument_id, bid_px, ask_px, "
           "bid_sz, ask_sz, ts_recv (0 when no quote), n_venues, has_quote.")
      .def_property_readonly("counters", &PyReducer::counters)
      .def_property_readonly("cut_ns", [](const PyReducer& r) { return r.reducer().cut_ns(); })
      .def_property_readonly("window_start_ns", [](const PyReducer& r) { return r.reducer().window_start_ns(); })
      .def_property_readonly("by_venue", [](const PyReducer& r) { return r.reducer().by_venue(); });
}
