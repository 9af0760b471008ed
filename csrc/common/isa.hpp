// Per-ISA namespace selection.
//
// Kernel sources that are compiled once per instruction set (files named *_avx2.cpp / *_avx512.cpp
// and their generic twin) put everything they define inside `pydl::PYDL_ISA_NS`. Each copy then
// has its own mangled names, so the linker can never merge an AVX-512 instantiation of an inline
// function or template into the generic path (which would crash on a CPU without AVX-512).
#pragma once

#if defined(__AVX512F__)
#define PYDL_ISA_NS avx512
#elif defined(__AVX2__) && defined(__FMA__)
#define PYDL_ISA_NS avx2
#else
#define PYDL_ISA_NS generic
#endif
