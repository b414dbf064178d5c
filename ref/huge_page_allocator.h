// HugePageAllocator: the allocator of Tensor's values. Arrays of 2 MiB and more are placed on
// transparent huge pages where the kernel offers them; smaller ones come from operator new.
//
// Why: a page fault or a TLB miss costs the same for 4 KiB as for 2 MiB. The small config's
// 911 MiB of weights span 233,000 pages of 4 KiB, so a decode step, which reads 185 MB of them,
// misses the TLB on nearly every page it touches. A prefill of 512 tokens writes [512, 32000]
// logits (62.5 MiB), which glibc gives back to the kernel when they are freed (it does so for every
// block over 32 MiB); the next prefill then takes 16,000 page faults to touch them again, about
// a third of its time on the machine of docs/performance.md (section 4). On 2 MiB pages: 32.
//
// Freed arrays of 2 MiB and more are kept for reuse, the last kCachedHugeBlocks of them, and
// handed out again for the same number of huge pages: a loop of same-shaped calls (prefills,
// serving steps) then touches memory that is already mapped. An allocation of another size first
// frees every kept block, so that kept memory is only ever reused, never added to a peak.
//
// How: such arrays are aligned to 2 MiB (std::aligned_alloc, the size rounded up to a whole
// number of huge pages) and advised MADV_HUGEPAGE, which Linux honours when transparent huge pages
// are "always" or "madvise" (Debian's default) and ignores otherwise. Where memory lives changes,
// never what it holds. Thread-safe. Allocation failures throw std::bad_alloc, as std::allocator's
// do.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace moeref {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;
inline constexpr size_t kCachedHugeBlocks = 4;

void* allocate_on_huge_pages(size_t bytes);
void deallocate_on_huge_pages(void* p, size_t bytes);

template <class T>
struct HugePageAllocator {
  using value_type = T;

  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) {}

  T* allocate(size_t n) { return static_cast<T*>(allocate_on_huge_pages(n * sizeof(T))); }
  // Elements made without a value are default-initialised (a float is left as it is): Tensor
  // zero-fills explicitly, or leaves the values to a kernel that overwrites them all
  // (Tensor::for_overwrite).
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0) {
      ::new (static_cast<void*>(p)) U;
    } else {
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
  }
  void deallocate(T* p, size_t n) { deallocate_on_huge_pages(p, n * sizeof(T)); }

  template <class U>
  bool operator==(const HugePageAllocator<U>&) const {
    return true;
  }
};

}  // namespace moeref
