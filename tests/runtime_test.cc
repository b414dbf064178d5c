// What a program opts into (runtime/): the kernel set by name (runtime/kernel_sets.h), Tensors on
// huge pages (runtime/huge_pages.h) and the malloc setting of runtime/freed_memory.h. The memory
// settings may not change a value and must do what they claim (alignment, reuse, no page faults on
// a repeated allocation), checked without timing anything. Without them, the reference's Tensor
// uses plain new/delete.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdint>
#include <memory>
#include <memory_resource>
#include <stdexcept>
#include <vector>

#include "ref/tensor.h"
#include "runtime/freed_memory.h"
#include "runtime/huge_pages.h"
#include "runtime/kernel_sets.h"

namespace moeref::runtime {
namespace {

bool aligned_to_huge_page(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % kHugePageBytes == 0;
}

// Nothing in the libraries installs a memory resource: a Tensor's memory is new/delete's.
TEST(TensorMemory, IsNewDeleteUnlessAProgramOptsIn) {
  EXPECT_EQ(std::pmr::get_default_resource(), std::pmr::new_delete_resource());
}

// The huge-page resource installed for one test, the previous default put back after it.
class HugePageTensors : public ::testing::Test {
 protected:
  void SetUp() override { previous_ = std::pmr::set_default_resource(huge_page_resource()); }
  void TearDown() override { std::pmr::set_default_resource(previous_); }

 private:
  std::pmr::memory_resource* previous_ = nullptr;
};

TEST_F(HugePageTensors, LargeTensorsStartOnAHugePageSmallOnesAnywhere) {
  const Tensor large({3, 1 << 20});  // 12 MiB
  EXPECT_TRUE(aligned_to_huge_page(large.data()));
  for (const float v : large.values()) ASSERT_EQ(v, 0.0f);
  const Tensor small({4, 4});
  ASSERT_EQ(small.numel(), 16);
  for (const float v : small.values()) EXPECT_EQ(v, 0.0f);
}

// A freed large block is handed out again for the same size, and a new Tensor on it is still
// zero-filled: reuse never shows old values.
TEST_F(HugePageTensors, AFreedLargeBlockIsReusedAndANewTensorOnItIsZero) {
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

TEST_F(HugePageTensors, CopiesKeepTheirValues) {
  Tensor a({3, 1 << 19});
  for (int64_t i = 0; i < a.numel(); ++i) a.data()[i] = static_cast<float>(i % 977);
  const Tensor b = a;
  EXPECT_NE(b.data(), a.data());
  EXPECT_TRUE(std::equal(a.values().begin(), a.values().end(), b.values().begin()));
  const Tensor c({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  EXPECT_EQ(c.data()[5], 6.0f);
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

TEST(KernelSets, ChosenByName) {
  EXPECT_STREQ(kernels_by_name("ref").name(), "ref");
  EXPECT_STREQ(kernels_by_name("simd").name(), "simd");
  EXPECT_THROW(kernels_by_name("cuda"), std::invalid_argument);
}

}  // namespace
}  // namespace moeref::runtime
