#include "runtime/huge_pages.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace moeref::runtime {

namespace {

size_t whole_huge_pages(size_t bytes) {
  return (bytes + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
}

// Freed huge-page blocks kept for reuse, oldest first, at most kCachedHugeBlocks.
class BlockCache {
 public:
  // A kept block of exactly `rounded` bytes; else nullptr, after freeing every kept block, so
  // that kept memory never adds to a new allocation's peak.
  void* take(size_t rounded) {
    std::vector<Block> released;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto it = std::find_if(blocks_.begin(), blocks_.end(),
                                   [&](const Block& b) { return b.bytes == rounded; });
      if (it != blocks_.end()) {
        void* p = it->p;
        blocks_.erase(it);
        return p;
      }
      released.swap(blocks_);
    }
    for (const Block& b : released) std::free(b.p);
    return nullptr;
  }

  void keep(void* p, size_t rounded) {
    void* evicted = nullptr;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      if (blocks_.size() == kCachedHugeBlocks) {
        evicted = blocks_.front().p;
        blocks_.erase(blocks_.begin());
      }
      blocks_.push_back({p, rounded});
    }
    std::free(evicted);
  }

 private:
  struct Block {
    void* p;
    size_t bytes;
  };
  std::mutex mutex_;
  std::vector<Block> blocks_;
};

class HugePageResource : public std::pmr::memory_resource {
 private:
  void* do_allocate(size_t bytes, size_t alignment) override {
    if (bytes < kHugePageBytes) return std::pmr::new_delete_resource()->allocate(bytes, alignment);
    const size_t rounded = whole_huge_pages(bytes);
    if (rounded < bytes) throw std::bad_alloc();
    if (void* kept = cache_.take(rounded)) return kept;
    void* p = std::aligned_alloc(kHugePageBytes, rounded);
    if (p == nullptr) throw std::bad_alloc();
#ifdef __linux__
    // A hint: where transparent huge pages are off, the memory stays on small pages.
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
  }

  void do_deallocate(void* p, size_t bytes, size_t alignment) override {
    if (bytes < kHugePageBytes) {
      std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
    } else {
      cache_.keep(p, whole_huge_pages(bytes));
    }
  }

  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  BlockCache cache_;
};

}  // namespace

std::pmr::memory_resource* huge_page_resource() {
  static HugePageResource* const resource = new HugePageResource;
  return resource;
}

void use_huge_pages_for_tensors() { std::pmr::set_default_resource(huge_page_resource()); }

}  // namespace moeref::runtime
