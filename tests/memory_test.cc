// Where ref/ keeps its memory: Tensor's huge-page allocator (ref/huge_page_allocator.h) and the
// malloc setting of ref/freed_memory.h. Neither may change a value; both must do what they claim
// (alignment, reuse, no page faults on a repeated allocation), checked without timing anything.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "ref/freed_memory.h"
#include "ref/huge_page_allocator.h"
#include "ref/tensor.h"

namespace moeref {
namespace {

bool aligned_to_huge_page(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % kHugePageBytes == 0;
}

TEST(HugePageAllocator, LargeTensorsStartOnAHugePageSmallOnesAnywhere) {
  const Tensor large({3, 1 << 20});  // 12 MiB
  EXPECT_TRUE(aligned_to_huge_page(large.data()));
  for (const float v : large.values()) ASSERT_EQ(v, 0.0f);
  const Tensor small({4, 4});
  ASSERT_EQ(small.numel(), 16);
  for (const float v : small.values()) EXPECT_EQ(v, 0.0f);
}

// A freed large block is handed out again for the same size, and a new Tensor on it is still
// zero-filled: reuse never shows old values.
TEST(HugePageAllocator, AFreedLargeBlockIsReusedAndANewTensorOnItIsZero) {
  const float* first = nullptr;
  {
    Tensor logits({512, 1500});  // 2.9 MiB: two huge pages
    for (float& v : logits.values()) v = 3.5f;
    first = logits.data();
  }
  const Tensor again({1500, 512});
  EXPECT_EQ(again.data(), first);
  for (const float v : again.values()) ASSERT_EQ(v, 0.0f);
}

TEST(HugePageAllocator, CopiesKeepTheirValues) {
  Tensor a({3, 1 << 19});
  for (int64_t i = 0; i < a.numel(); ++i) a.data()[i] = static_cast<float>(i % 977);
  const Tensor b = a;
  EXPECT_NE(b.data(), a.data());
  EXPECT_TRUE(std::equal(a.values().begin(), a.values().end(), b.values().begin()));
  const Tensor c({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  EXPECT_EQ(c.data()[5], 6.0f);
}

// For a kernel that writes every value: the shape and storage of Tensor(shape), values left
// unspecified; the same shape checks.
TEST(HugePageAllocator, ForOverwriteHasTheShapeAndStorageOfAZeroFilledTensor) {
  const Tensor logits = Tensor::for_overwrite({512, 1500});
  EXPECT_EQ(logits.shape(), (std::vector<int64_t>{512, 1500}));
  EXPECT_EQ(logits.numel(), 512 * 1500);
  EXPECT_TRUE(aligned_to_huge_page(logits.data()));
  EXPECT_THROW(Tensor::for_overwrite({4, -1}), std::length_error);
  EXPECT_EQ(Tensor::for_overwrite({0, 7}).numel(), 0);
}

long minor_page_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// What a forward call does with its activations: several blocks of a few MiB, touched and freed.
// By default glibc trims the freed top of its heap and the next call faults every page back in
// (3072 faults here); with retain_freed_memory the second round reuses mapped memory.
TEST(RetainFreedMemory, ARepeatedRoundOfAllocationsTakesNoPageFaults) {
#if !defined(__GLIBC__) || defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "a setting of glibc's malloc, which AddressSanitizer replaces";
#endif
  retain_freed_memory();
  const auto round = [] {
    std::vector<std::unique_ptr<std::vector<char>>> blocks;
    for (int i = 0; i < 8; ++i)
      blocks.push_back(std::make_unique<std::vector<char>>(size_t{3} << 19));
    for (auto& block : blocks) {
      for (size_t i = 0; i < block->size(); i += 4096) (*block)[i] = 1;
    }
  };
  round();
  const long before = minor_page_faults();
  round();
  EXPECT_LT(minor_page_faults() - before, 64);
}

}  // namespace
}  // namespace moeref
