// Tensor: an owned, contiguous, row-major fp32 array with a shape, zero-filled when made from a
// shape alone.
//
// Its values are a std::pmr::vector, so they come from the default memory resource: plain
// new/delete, unless a program installs another before making tensors (the moeref program and
// the benchmarks put large ones on huge pages, runtime/huge_pages.h). Where memory lives never
// changes what it holds.
//
// The reference keeps one value type (fp32) and one layout (row-major, last index fastest) so
// that every loop in ref/ can be read against the math with nothing hidden. Shapes are written
// outermost first, as in the comments throughout: [tokens, d_model], [heads, positions, head_dim].
#pragma once

#include <cstdint>
#include <memory_resource>
#include <span>
#include <string>
#include <vector>

namespace moeref {

// Product of the dimensions; throws std::length_error on a negative dimension or overflow.
int64_t shape_numel(std::span<const int64_t> shape);
std::string shape_string(std::span<const int64_t> shape);  // "[2, 64]"

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape);  // zero-filled
  Tensor(std::vector<int64_t> shape, std::vector<float> values);

  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(size_t axis) const { return shape_.at(axis); }
  int64_t numel() const { return static_cast<int64_t>(values_.size()); }
  bool empty() const { return values_.empty(); }

  float* data() { return values_.data(); }
  const float* data() const { return values_.data(); }
  std::span<float> values() { return values_; }
  std::span<const float> values() const { return values_; }

  // Row r of a tensor viewed as [dim(0), numel / dim(0)].
  float* row(int64_t r) { return values_.data() + r * row_size(); }
  const float* row(int64_t r) const { return values_.data() + r * row_size(); }
  int64_t row_size() const { return shape_.empty() || shape_[0] == 0 ? 0 : numel() / shape_[0]; }

 private:
  std::vector<int64_t> shape_;
  std::pmr::vector<float> values_;
};

}  // namespace moeref
