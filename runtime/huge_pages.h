// Tensor memory on transparent huge pages: an opt-in for programs that call the model in a loop
// (the moeref program, the benchmarks). The reference's Tensor takes its storage from the default
// memory resource (std::pmr::get_default_resource(), ref/tensor.h), which is plain new/delete
// until a program calls use_huge_pages_for_tensors(); nothing in ref/, simd/ or golden/ calls it.
//
// Why: a page fault or a TLB miss costs the same for 4 KiB as for 2 MiB. The small config's
// 911 MiB of weights span 233,000 pages of 4 KiB, so a decode step, which reads 185 MB of them,
// misses the TLB on nearly every page it touches. A prefill of 512 tokens writes [512, 32000]
// logits (62.5 MiB), which glibc gives back to the kernel when they are freed (it does so for every
// block over 32 MiB); the next prefill then takes 16,000 page faults to touch them again, most of
// the about 20,000 a prefill took (runtime/freed_memory.h keeps the activations' share away). On
// 2 MiB pages: 32. (docs/performance.md gives the measurements.)
//
// What: blocks of 2 MiB and more are aligned to 2 MiB (the size rounded up to a whole number of
// huge pages) and advised MADV_HUGEPAGE, which Linux honours when transparent huge pages are
// "always" or "madvise" (Debian's default) and ignores otherwise. Freed blocks of 2 MiB and more
// are kept for reuse, the last kCachedHugeBlocks of them, and handed out again for the same number
// of huge pages: a loop of same-shaped calls (prefills, serving steps) then touches memory that is
// already mapped. An allocation of another size first frees every kept block, so that kept memory
// is only ever reused, never added to a peak. Smaller blocks come from operator new. Where memory
// lives changes, never what it holds. Thread-safe; failures throw std::bad_alloc.
#pragma once

#include <cstddef>
#include <memory_resource>

namespace moeref::runtime {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;
inline constexpr size_t kCachedHugeBlocks = 4;

// The resource described above; one per process, never destroyed (Tensors with static storage may
// be freed after it would have been).
std::pmr::memory_resource* huge_page_resource();

// Makes huge_page_resource() the default memory resource, so that every Tensor made from here on
// lives there. Call it first thing, before any Tensor exists.
void use_huge_pages_for_tensors();

}  // namespace moeref::runtime
