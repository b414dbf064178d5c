// The tracer: the one mechanism through which every named intermediate of a forward pass can be
// observed (golden writing, comparison, NaN hunting, tests).
//
// The model calls record() once per named tensor, in execution order, with the values of the
// tokens of that forward call. Names are stable and documented in docs/tracing.md; golden sets
// and other backends rely on them. A forward pass without a tracer records nothing and pays
// nothing.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ref/io/safetensors.h"

namespace moeref {

class Tracer {
 public:
  virtual ~Tracer() = default;
  virtual void record(std::string_view name, std::span<const int64_t> shape,
                      std::span<const float> values) = 0;
  virtual void record(std::string_view name, std::span<const int64_t> shape,
                      std::span<const int32_t> values) = 0;
};

// Keeps a copy of everything recorded, in order. Several forward calls share one recorder through
// a PrefixedTracer each (below), so that their names stay distinct.
class TraceRecorder : public Tracer {
 public:
  void record(std::string_view name, std::span<const int64_t> shape,
              std::span<const float> values) override;
  void record(std::string_view name, std::span<const int64_t> shape,
              std::span<const int32_t> values) override;

  const std::vector<TensorRecord>& records() const { return records_; }
  // Throws std::out_of_range naming the tensor if nothing was recorded under that name.
  const TensorRecord& at(std::string_view name) const;
  bool contains(std::string_view name) const;

 private:
  std::vector<TensorRecord> records_;
};

}  // namespace moeref

namespace moeref {

// Forwards every record to another tracer under "<prefix><name>": how the calls of one generation
// ("prefill/", "decode.0/", ...) share a recorder without their names colliding.
class PrefixedTracer : public Tracer {
 public:
  PrefixedTracer(Tracer& inner, std::string prefix) : inner_(inner), prefix_(std::move(prefix)) {}
  void record(std::string_view name, std::span<const int64_t> shape,
              std::span<const float> values) override {
    inner_.record(prefix_ + std::string(name), shape, values);
  }
  void record(std::string_view name, std::span<const int64_t> shape,
              std::span<const int32_t> values) override {
    inner_.record(prefix_ + std::string(name), shape, values);
  }

 private:
  Tracer& inner_;
  std::string prefix_;
};

// Records under "<scope><name>" when a tracer is attached; does nothing (and copies no values)
// when it is not. The model hands one of these to each step.
class TraceScope {
 public:
  TraceScope(Tracer* tracer, std::string scope) : tracer_(tracer), scope_(std::move(scope)) {}
  bool enabled() const { return tracer_ != nullptr; }
  // A scope inside this one: "<scope><name>".
  TraceScope nested(std::string_view name) const {
    return TraceScope(tracer_, scope_ + std::string(name));
  }
  template <class T>
  void operator()(std::string_view name, std::initializer_list<int64_t> shape,
                  std::span<const T> values) const {
    if (tracer_ != nullptr) {
      tracer_->record(scope_ + std::string(name),
                      std::span<const int64_t>(shape.begin(), shape.size()), values);
    }
  }
  void operator()(std::string_view name, std::initializer_list<int64_t> shape,
                  const float* values) const {
    if (tracer_ != nullptr) {
      (*this)(name, shape, std::span<const float>(values, static_cast<size_t>(product(shape))));
    }
  }
  void operator()(std::string_view name, std::initializer_list<int64_t> shape,
                  const int32_t* values) const {
    if (tracer_ != nullptr) {
      (*this)(name, shape, std::span<const int32_t>(values, static_cast<size_t>(product(shape))));
    }
  }

 private:
  static int64_t product(std::initializer_list<int64_t> shape) {
    int64_t n = 1;
    for (const int64_t d : shape) n *= d;
    return n;
  }
  Tracer* tracer_;
  std::string scope_;
};

}  // namespace moeref
