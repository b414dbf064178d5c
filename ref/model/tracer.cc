#include "ref/model/tracer.h"

#include <algorithm>
#include <stdexcept>

namespace moeref {

void TraceRecorder::record(std::string_view name, std::span<const int64_t> shape,
                           std::span<const float> values) {
  records_.push_back(
      make_f32_record(std::string(name), std::vector<int64_t>(shape.begin(), shape.end()), values));
}

void TraceRecorder::record(std::string_view name, std::span<const int64_t> shape,
                           std::span<const int32_t> values) {
  records_.push_back(
      make_i32_record(std::string(name), std::vector<int64_t>(shape.begin(), shape.end()), values));
}

bool TraceRecorder::contains(std::string_view name) const {
  return std::any_of(records_.begin(), records_.end(),
                     [&](const TensorRecord& r) { return r.name == name; });
}

const TensorRecord& TraceRecorder::at(std::string_view name) const {
  for (const TensorRecord& record : records_) {
    if (record.name == name) return record;
  }
  throw std::out_of_range("no traced tensor named \"" + std::string(name) + "\"");
}

}  // namespace moeref
