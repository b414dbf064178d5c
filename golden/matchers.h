// GoogleTest matchers for a backend's unit tests: a kernel's output against a golden tensor, or a
// whole candidate against a golden set, with the checker of golden/compare.h.
//
//   #include <gmock/gmock.h>
//   #include "golden/matchers.h"
//
//   using moeref::golden::GoldenSet;
//   using moeref::golden::MatchesGolden;
//   using moeref::golden::Precision;
//
//   TEST(MyBackend, RouterLogits) {
//     const GoldenSet set = GoldenSet::open(golden_dir / "tiny-mqa-moe");
//     std::vector<float> router_logits = my_backend_router(...);
//     EXPECT_THAT(router_logits,
//                 MatchesGolden(set, "prefill/layers.0.moe.router_logits", Precision::kBF16));
//   }
//
// MatchesGolden accepts anything convertible to std::span<const float> (std::vector<float>,
// std::array<float, N>, a span) and anything with a values() that is (moeref::Tensor). The
// candidate must have the golden tensor's element count, in its row-major order; the tolerance is
// the one compare_tensor applies (the precision's default for the tensor's class, unless the
// options override it). A failure explains itself with the tensor's report: status, max absolute
// and relative error, NMSE, cosine, elements out of tolerance, the tolerance and the note.
//
// MatchesGoldenSet checks a golden::Candidate (tensors by name, as a backend hands them to the
// checker) with compare(); a failure names the first failing tensor and lists the tensors that
// did not pass.
//
// The matchers keep a reference to the set: it must outlive them. A name the set does not have
// throws GoldenError, so that Not(MatchesGolden(...)) cannot pass on a misspelt name.
//
// Header-only: the test links GTest::gmock itself, besides moeref::golden.
#pragma once

#include <gmock/gmock.h>

#include <concepts>
#include <cstdio>
#include <ostream>
#include <span>
#include <string>
#include <utility>

#include "golden/compare.h"
#include "golden/golden_set.h"
#include "golden/tensor_kinds.h"
#include "ref/io/safetensors.h"
#include "ref/tensor.h"

namespace moeref::golden {

// What MatchesGolden compares: a float range, or a type whose values() is one.
template <typename T>
concept FloatValues = std::convertible_to<const T&, std::span<const float>> ||
    requires(const T& candidate) {
  { candidate.values() } -> std::convertible_to<std::span<const float>>;
};

template <FloatValues T>
std::span<const float> float_values(const T& candidate) {
  if constexpr (std::convertible_to<const T&, std::span<const float>>) {
    return candidate;
  } else {
    return candidate.values();
  }
}

// The report of one tensor in words, for a matcher's explanation. A candidate of the wrong size
// has no metrics, only the note saying so.
inline std::string tensor_report_text(const TensorReport& report, Precision precision) {
  std::string result = std::string(status_name(report.status)) + ": ";
  if (report.elements > 0) {
    char metrics[400];
    std::snprintf(
        metrics, sizeof metrics,
        "max abs error %.3e, max rel error %.3e, NMSE %.3e, cosine %.9f, "
        "%lld of %lld elements out of tolerance (%lld non-finite), "
        "tolerance rtol %.3g atol %.3g (%s, %s)",
        report.max_abs_error, report.max_rel_error, report.nmse, report.cosine,
        static_cast<long long>(report.out_of_tolerance), static_cast<long long>(report.elements),
        static_cast<long long>(report.non_finite), report.tolerance.rtol, report.tolerance.atol,
        precision_name(precision), tolerance_class_name(report.tolerance_class));
    result += metrics;
  }
  if (!report.note.empty()) result += (report.elements > 0 ? "; " : "") + report.note;
  return result;
}

class GoldenTensorMatcher {
 public:
  GoldenTensorMatcher(const GoldenSet& set, std::string name, CompareOptions options)
      : set_(&set), name_(std::move(name)), options_(options) {}

  template <FloatValues T>
  bool MatchAndExplain(const T& candidate, ::testing::MatchResultListener* listener) const {
    const TensorReport report = compare_tensor(*set_, name_, float_values(candidate), options_);
    *listener << tensor_report_text(report, options_.precision);
    return report.status == TensorStatus::kPass;
  }

  void DescribeTo(std::ostream* os) const {
    *os << "matches golden tensor \"" << name_ << "\" of set " << set_->name() << " at "
        << precision_name(options_.precision);
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "does not match golden tensor \"" << name_ << "\" of set " << set_->name() << " at "
        << precision_name(options_.precision);
  }

 private:
  const GoldenSet* set_;
  std::string name_;
  CompareOptions options_;
};

inline ::testing::PolymorphicMatcher<GoldenTensorMatcher> MatchesGolden(const GoldenSet& set,
                                                                        std::string name,
                                                                        CompareOptions options) {
  return ::testing::MakePolymorphicMatcher(GoldenTensorMatcher(set, std::move(name), options));
}

inline ::testing::PolymorphicMatcher<GoldenTensorMatcher> MatchesGolden(
    const GoldenSet& set, std::string name, Precision precision = Precision::kFP32) {
  CompareOptions options;
  options.precision = precision;
  return MatchesGolden(set, std::move(name), options);
}

class GoldenSetMatcher : public ::testing::MatcherInterface<const Candidate&> {
 public:
  GoldenSetMatcher(const GoldenSet& set, CompareOptions options) : set_(&set), options_(options) {}

  bool MatchAndExplain(const Candidate& candidate,
                       ::testing::MatchResultListener* listener) const override {
    const CompareReport report = compare(*set_, candidate, options_);
    if (report.first_failure) *listener << "first failing tensor: " << *report.first_failure;
    *listener << "\n" << report.to_text();
    return report.passed;
  }

  void DescribeTo(std::ostream* os) const override {
    *os << "matches golden set " << set_->name() << " at " << precision_name(options_.precision);
  }
  void DescribeNegationTo(std::ostream* os) const override {
    *os << "does not match golden set " << set_->name() << " at "
        << precision_name(options_.precision);
  }

 private:
  const GoldenSet* set_;
  CompareOptions options_;
};

inline ::testing::Matcher<const Candidate&> MatchesGoldenSet(const GoldenSet& set,
                                                             CompareOptions options = {}) {
  return ::testing::MakeMatcher(new GoldenSetMatcher(set, options));
}

}  // namespace moeref::golden

// How GoogleTest prints the candidates in a failure message, instead of their bytes. A
// golden::Candidate's printer lives here, beside TensorRecord, where argument-dependent lookup
// finds it.
namespace moeref {

inline void PrintTo(const Tensor& tensor, std::ostream* os) {
  *os << "Tensor " << shape_string(tensor.shape());
}

inline void PrintTo(const TensorRecord& record, std::ostream* os) {
  *os << dtype_name(record.dtype) << " " << shape_string(record.shape);
}

inline void PrintTo(const golden::Candidate& candidate, std::ostream* os) {
  *os << "candidate of " << candidate.size() << " tensors";
}

}  // namespace moeref
