// The instruction-set namespace of the numeric headers.
//
// black76.hpp, implied_vol.hpp and implied_vol_batch.hpp are compiled more than once into the one extension:
// by the binding files (baseline x86-64) and by the SIMD kernel files under cpp/simd/ (baseline, AVX2+FMA,
// AVX-512), each with its own -m flags. Their inline functions would otherwise share one mangled name across
// those translation units, and the linker would keep any one copy: an AVX-512 copy of a function called
// from the baseline path dies with an illegal instruction on a CPU without AVX-512. Each compilation puts
// them into its own inline namespace instead (VOLFAST_ARCH, set per kernel target in CMakeLists.txt), so
// `volfast::black_price` still names them in source while every copy has a distinct symbol.
//
// Pure C++: no pybind11 here.
#pragma once

#ifndef VOLFAST_ARCH
#define VOLFAST_ARCH arch_base
#endif

#define VOLFAST_ARCH_BEGIN inline namespace VOLFAST_ARCH {
#define VOLFAST_ARCH_END }
