// Streaming top-of-book snapshot reducer. Pure C++ (no Python): the bindings validate arrays, then call
// update() with the GIL released.
//
// Contract
// --------
// Records arrive in file order, in any number of chunks. A record is "in the window" when
//     cut_ns - lookback_ns <= ts_recv <= cut_ns          (both ends inclusive, UTC nanoseconds).
// For every key the reducer keeps the in-window record with the largest ts_recv; on equal ts_recv the record
// that came later in file order wins (comparison is >=). Chunk boundaries therefore never change the answer.
//
// Keys: in single-feed mode the key is instrument_id. In venue mode (OPRA per-venue mbp-1 / tbbo / bbo) the key
// is (instrument_id, publisher_id): each venue's last quote in the window is kept, and finish() consolidates:
//     bid      = max over venues of the defined bid prices,   bid_size = sum of sizes of venues at that bid
//     ask      = min over venues of the defined ask prices,   ask_size = sum of sizes of venues at that ask
//     ts_recv  = latest ts_recv among the venues that contribute the best bid or the best ask
//                (or, if no venue has a defined side, the latest ts_recv among the venues' quotes)
// A venue whose last quote in the window has a side undefined (UNDEF_PRICE) does not contribute that side.
//
// Memory is one slot per key (instrument or instrument x venue), never per record.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace volfast::snapshot {

// Databento's "undefined price" sentinel for int64 fixed-point (1e-9) prices.
constexpr std::int64_t kUndefPrice = std::numeric_limits<std::int64_t>::max();

// A 1-D read-only view through a byte stride (stride 0 broadcasts one value). Alignment-safe: DBN records are
// packed structs, so fields may sit at any offset.
template <class T>
struct View {
  const char* ptr = nullptr;
  std::int64_t stride = 0;
  T operator[](std::int64_t i) const {
    T v;
    std::memcpy(&v, ptr + i * stride, sizeof(T));
    return v;
  }
};

// Per-key state: the last in-window quote. 40 bytes.
struct Slot {
  std::int64_t bid_px = kUndefPrice;
  std::int64_t ask_px = kUndefPrice;
  std::uint64_t ts_recv = 0;
  std::uint32_t bid_sz = 0;
  std::uint32_t ask_sz = 0;
  std::uint32_t instrument_id = 0;
  std::uint16_t publisher_id = 0;
  std::uint8_t has_quote = 0;
};

// One consolidated output row per instrument.
struct Row {
  std::uint32_t instrument_id;
  std::int64_t bid_px;  // kUndefPrice when missing
  std::int64_t ask_px;
  std::uint32_t bid_sz;
  std::uint32_t ask_sz;
  std::uint64_t ts_recv;  // 0 when has_quote == 0
  std::uint16_t n_venues;  // venues with a quote in the window (1 or 0 in single-feed mode)
  std::uint8_t has_quote;
};

struct Counters {
  std::uint64_t records = 0;        // all records seen
  std::uint64_t in_window = 0;      // records inside [cut - lookback, cut]
  std::uint64_t after_cut = 0;      // ts_recv > cut
  std::uint64_t before_window = 0;  // ts_recv < cut - lookback
  std::uint64_t out_of_order = 0;   // ts_recv smaller than the previous record's (file not sorted)
  std::uint64_t min_ts = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ts = 0;
};

class Reducer {
 public:
  Reducer(std::uint64_t cut_ns, std::uint64_t lookback_ns, bool by_venue)
      : cut_(cut_ns), lo_(cut_ns >= lookback_ns ? cut_ns - lookback_ns : 0), by_venue_(by_venue) {
    rehash(1024);
  }

  std::uint64_t cut_ns() const { return cut_; }
  std::uint64_t window_start_ns() const { return lo_; }
  bool by_venue() const { return by_venue_; }
  const Counters& counters() const { return c_; }
  std::size_t n_keys() const { return slots_.size(); }

  // Consume n records. Accessors are anything with operator[](int64) -> value (View<T> or the bindings' own).
  template <class TsA, class IdA, class PxA, class SzA, class PubA>
  void update(std::int64_t n, const TsA& ts_recv, const IdA& instrument_id, const PxA& bid_px, const PxA& ask_px,
              const SzA& bid_sz, const SzA& ask_sz, const PubA& publisher_id) {
    std::uint64_t prev = prev_ts_;
    for (std::int64_t i = 0; i < n; ++i) {
      const std::uint64_t ts = ts_recv[i];
      const std::uint32_t iid = instrument_id[i];
      const std::uint16_t pub = by_venue_ ? static_cast<std::uint16_t>(publisher_id[i]) : 0;
      // Every record registers its key, so instruments quoted only outside the window are still reported.
      Slot& s = slot_for(iid, pub);
      c_.out_of_order += ts < prev;
      prev = ts;
      c_.min_ts = std::min(c_.min_ts, ts);
      c_.max_ts = std::max(c_.max_ts, ts);
      if (ts > cut_) {
        ++c_.after_cut;
        continue;
      }
      if (ts < lo_) {
        ++c_.before_window;
        continue;
      }
      ++c_.in_window;
      if (!s.has_quote || ts >= s.ts_recv) {  // >=: a later record in file order wins a tie
        s.bid_px = bid_px[i];
        s.ask_px = ask_px[i];
        s.bid_sz = bid_sz[i];
        s.ask_sz = ask_sz[i];
        s.ts_recv = ts;
        s.has_quote = 1;
      }
    }
    c_.records += static_cast<std::uint64_t>(std::max<std::int64_t>(n, 0));
    prev_ts_ = prev;
  }

  // One row per instrument, sorted by instrument_id; venues consolidated as documented above.
  std::vector<Row> finish() const {
    std::vector<std::uint32_t> order(slots_.size());
    std::iota(order.begin(), order.end(), 0u);
    std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
      const Slot &x = slots_[a], &y = slots_[b];
      return x.instrument_id != y.instrument_id ? x.instrument_id < y.instrument_id : x.publisher_id < y.publisher_id;
    });
    std::vector<Row> rows;
    std::size_t i = 0;
    while (i < order.size()) {
      std::size_t j = i;
      const std::uint32_t iid = slots_[order[i]].instrument_id;
      while (j < order.size() && slots_[order[j]].instrument_id == iid) ++j;
      rows.push_back(consolidate(order, i, j));
      i = j;
    }
    return rows;
  }

 private:
  Row consolidate(const std::vector<std::uint32_t>& order, std::size_t b, std::size_t e) const {
    Row r{slots_[order[b]].instrument_id, kUndefPrice, kUndefPrice, 0, 0, 0, 0, 0};
    std::uint64_t bid_sz = 0, ask_sz = 0, any_ts = 0;
    for (std::size_t k = b; k < e; ++k) {
      const Slot& s = slots_[order[k]];
      if (!s.has_quote) continue;
      ++r.n_venues;
      r.has_quote = 1;
      any_ts = std::max(any_ts, s.ts_recv);
      if (s.bid_px != kUndefPrice) {
        if (r.bid_px == kUndefPrice || s.bid_px > r.bid_px) {
          r.bid_px = s.bid_px;
          bid_sz = s.bid_sz;
        } else if (s.bid_px == r.bid_px) {
          bid_sz += s.bid_sz;
        }
      }
      if (s.ask_px != kUndefPrice) {
        if (r.ask_px == kUndefPrice || s.ask_px < r.ask_px) {
          r.ask_px = s.ask_px;
          ask_sz = s.ask_sz;
        } else if (s.ask_px == r.ask_px) {
          ask_sz += s.ask_sz;
        }
      }
    }
    if (!r.has_quote) return r;
    // Quote time: the latest venue at the best bid or best ask.
    std::uint64_t ts = 0;
    for (std::size_t k = b; k < e; ++k) {
      const Slot& s = slots_[order[k]];
      if (!s.has_quote) continue;
      const bool at_bid = r.bid_px != kUndefPrice && s.bid_px == r.bid_px;
      const bool at_ask = r.ask_px != kUndefPrice && s.ask_px == r.ask_px;
      if (at_bid || at_ask) ts = std::max(ts, s.ts_recv);
    }
    r.ts_recv = ts != 0 ? ts : any_ts;
    constexpr std::uint64_t kMaxSz = std::numeric_limits<std::uint32_t>::max();
    r.bid_sz = static_cast<std::uint32_t>(std::min(bid_sz, kMaxSz));  // saturate: sizes are u32 on the wire
    r.ask_sz = static_cast<std::uint32_t>(std::min(ask_sz, kMaxSz));
    return r;
  }

  // Open addressing, linear probing, power-of-two capacity, load <= 1/2. Keys are (iid << 16 | publisher) + 1
  // so that 0 marks an empty bucket.
  static std::uint64_t mix(std::uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
  }

  Slot& slot_for(std::uint32_t iid, std::uint16_t pub) {
    const std::uint64_t key = ((static_cast<std::uint64_t>(iid) << 16) | pub) + 1;
    if (key == last_key_) return slots_[last_idx_];  // runs of one instrument are common in sorted feeds
    std::uint64_t h = mix(key) & mask_;
    while (true) {
      const std::uint64_t k = keys_[h];
      if (k == key) break;
      if (k == 0) {
        if (2 * (slots_.size() + 1) > keys_.size()) {
          rehash(keys_.size() * 2);
          return slot_for(iid, pub);
        }
        keys_[h] = key;
        vals_[h] = static_cast<std::uint32_t>(slots_.size());
        Slot s;
        s.instrument_id = iid;
        s.publisher_id = pub;
        slots_.push_back(s);
        break;
      }
      h = (h + 1) & mask_;
    }
    last_key_ = key;
    last_idx_ = vals_[h];
    return slots_[last_idx_];
  }

  void rehash(std::size_t cap) {
    std::vector<std::uint64_t> keys(cap, 0);
    std::vector<std::uint32_t> vals(cap, 0);
    const std::uint64_t mask = cap - 1;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i] == 0) continue;
      std::uint64_t h = mix(keys_[i]) & mask;
      while (keys[h] != 0) h = (h + 1) & mask;
      keys[h] = keys_[i];
      vals[h] = vals_[i];
    }
    keys_.swap(keys);
    vals_.swap(vals);
    mask_ = mask;
    last_key_ = 0;
  }

  std::uint64_t cut_, lo_;
  bool by_venue_;
  Counters c_;
  std::uint64_t prev_ts_ = 0;
  std::vector<Slot> slots_;
  std::vector<std::uint64_t> keys_;
  std::vector<std::uint32_t> vals_;
  std::uint64_t mask_ = 0;
  std::uint64_t last_key_ = 0;
  std::uint32_t last_idx_ = 0;
};

}  // namespace volfast::snapshot
