#include "ref/tensor.h"

#include <stdexcept>

namespace moeref {

int64_t shape_numel(std::span<const int64_t> shape) {
  int64_t count = 1;
  for (const int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(count, dim, &count)) {
      throw std::length_error("invalid tensor shape " + shape_string(shape));
    }
  }
  return count;
}

std::string shape_string(std::span<const int64_t> shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

Tensor::Tensor(std::vector<int64_t> shape)
    : shape_(std::move(shape)), values_(static_cast<size_t>(shape_numel(shape_)), 0.0f) {}

Tensor::Tensor(std::vector<int64_t> shape, std::vector<float> values)
    : shape_(std::move(shape)), values_(values.begin(), values.end()) {
  if (shape_numel(shape_) != static_cast<int64_t>(values_.size())) {
    throw std::length_error("tensor of shape " + shape_string(shape_) + " given " +
                            std::to_string(values_.size()) + " values");
  }
}

}  // namespace moeref
