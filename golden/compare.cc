#include "golden/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <sstream>

namespace moeref::golden {

using nlohmann::json;

const char* precision_name(Precision precision) {
  switch (precision) {
    case Precision::kFP32:
      return "fp32";
    case Precision::kTF32:
      return "tf32";
    case Precision::kBF16:
      return "bf16";
    case Precision::kFP16:
      return "fp16";
  }
  return "?";
}

Precision precision_from_name(const std::string& name) {
  for (Precision p : {Precision::kFP32, Precision::kTF32, Precision::kBF16, Precision::kFP16}) {
    if (name == precision_name(p)) return p;
  }
  throw std::invalid_argument("unknown precision \"" + name + "\" (fp32, tf32, bf16 or fp16)");
}

const char* status_name(TensorStatus status) {
  switch (status) {
    case TensorStatus::kPass:
      return "pass";
    case TensorStatus::kFail:
      return "FAIL";
    case TensorStatus::kNearTie:
      return "near_tie";
    case TensorStatus::kAfterNearTie:
      return "after_near_tie";
    case TensorStatus::kMissing:
      return "missing";
  }
  return "?";
}

namespace {

bool is_float(DType dtype) {
  return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16 ||
         dtype == DType::kF64;
}

bool is_integer(DType dtype) { return dtype == DType::kI32 || dtype == DType::kI64; }

float half_to_float(uint16_t h) {
  _Float16 value;
  std::memcpy(&value, &h, sizeof value);
  return static_cast<float>(value);
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

template <class T>
T load(const std::byte* data, int64_t i) {
  T value;
  std::memcpy(&value, data + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return value;
}

std::vector<double> as_doubles(const TensorRecord& record) {
  const int64_t n = record.numel();
  std::vector<double> values(static_cast<size_t>(n));
  const std::byte* data = record.bytes.data();
  for (int64_t i = 0; i < n; ++i) {
    switch (record.dtype) {
      case DType::kF32:
        values[i] = load<float>(data, i);
        break;
      case DType::kF64:
        values[i] = load<double>(data, i);
        break;
      case DType::kF16:
        values[i] = half_to_float(load<uint16_t>(data, i));
        break;
      case DType::kBF16:
        values[i] = bf16_to_float(load<uint16_t>(data, i));
        break;
      case DType::kI32:
        values[i] = load<int32_t>(data, i);
        break;
      case DType::kI64:
        values[i] = static_cast<double>(load<int64_t>(data, i));
        break;
      default:
        break;
    }
  }
  return values;
}

void measure_floats(const std::vector<double>& expected, std::span<const double> actual,
                    TensorReport& report) {
  double squared_error = 0, squared_expected = 0, squared_actual = 0, product = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double e = expected[i];
    const double a = actual[i];
    if (!std::isfinite(e)) {  // a golden inf or NaN must be reproduced exactly
      if (!(a == e || (std::isnan(a) && std::isnan(e)))) ++report.out_of_tolerance;
      continue;
    }
    if (!std::isfinite(a)) {
      ++report.non_finite;
      ++report.out_of_tolerance;
      continue;
    }
    const double error = std::fabs(a - e);
    report.max_abs_error = std::max(report.max_abs_error, error);
    if (e != 0.0) report.max_rel_error = std::max(report.max_rel_error, error / std::fabs(e));
    if (error > report.tolerance.atol + report.tolerance.rtol * std::fabs(e)) {
      ++report.out_of_tolerance;
    }
    squared_error += error * error;
    squared_expected += e * e;
    squared_actual += a * a;
    product += a * e;
  }
  report.nmse = squared_expected > 0 ? squared_error / squared_expected : squared_error;
  report.cosine = squared_expected > 0 && squared_actual > 0
                      ? product / std::sqrt(squared_expected * squared_actual)
                      : (squared_expected == squared_actual ? 1.0 : 0.0);
  if (report.non_finite > 0) {
    report.note = std::to_string(report.non_finite) + " non-finite values";
  } else if (report.out_of_tolerance > 0) {
    report.note = std::to_string(report.out_of_tolerance) + " of " +
                  std::to_string(report.elements) + " elements out of tolerance";
  }
  report.status = report.out_of_tolerance > 0 ? TensorStatus::kFail : TensorStatus::kPass;
}

// The golden margin that decided row `row` of an integer tensor, and the smallest margin the
// candidate's precision can resolve there; nullopt where no margin applies (kept flags).
struct Decision {
  double margin;
  double resolution;
};

double gap_at_rank(std::vector<double> values, size_t rank) {
  std::sort(values.begin(), values.end(), std::greater<>());
  double gap = std::numeric_limits<double>::infinity();
  for (size_t j = 0; j <= rank && j + 1 < values.size(); ++j)
    gap = std::min(gap, values[j] - values[j + 1]);
  return gap;
}

class Checker {
 public:
  Checker(const GoldenSet& set, const CompareOptions& options) : set_(set), options_(options) {}

  Tolerance tolerance_for(ToleranceClass c) const {
    Tolerance t = default_tolerance(options_.precision, c);
    if (options_.rtol) t.rtol = *options_.rtol;
    if (options_.atol) t.atol = *options_.atol;
    return t;
  }

  // Twice the tolerance of the values around `magnitude`: two candidates each off by one
  // tolerance can swap an order that the golden values separate by less than this.
  double resolution(ToleranceClass c, double magnitude) const {
    const Tolerance t = tolerance_for(c);
    return 2.0 * (t.atol + t.rtol * std::fabs(magnitude));
  }

  // What decided row `row` of an integer tensor: top-k indices by the gap among the k + 1 largest
  // router probabilities (traced, or an op case's input "probs"); greedy tokens by the top-2 logit
  // gap; sampled tokens by the draw's distance to a boundary (manifest margins).
  std::optional<Decision> decision(const std::string& name, int64_t row, int64_t width) const {
    const TensorRecord* probs = nullptr;
    if (traced_name(name).ends_with("moe.topk_indices")) {
      std::string probs_name = name;
      probs_name.replace(probs_name.size() - std::string("topk_indices").size(), std::string::npos,
                         "router_probs");
      if (set_.has_expected(probs_name)) probs = &set_.expected_tensor(probs_name);
    } else if (name == "indices" && set_.inputs().contains("probs")) {
      probs = &set_.inputs().at("probs");
    }
    if (probs != nullptr) {
      const std::vector<double> values = as_doubles(*probs);
      const int64_t n_experts = probs->shape.back();
      const std::vector<double> row_probs(values.begin() + row * n_experts,
                                          values.begin() + (row + 1) * n_experts);
      const double top = *std::max_element(row_probs.begin(), row_probs.end());
      return Decision{gap_at_rank(row_probs, static_cast<size_t>(width - 1)),
                      resolution(ToleranceClass::kProbability, top)};
    }
    const json& margins =
        set_.manifest().contains("margins") ? set_.manifest().at("margins") : json();
    auto margin_at = [&](const char* key) -> std::optional<double> {
      if (!margins.is_object() || !margins.contains(key) || !margins.at(key).is_array()) {
        return std::nullopt;
      }
      const json& values = margins.at(key);
      if (row >= static_cast<int64_t>(values.size()) || !values.at(row).is_number()) {
        return std::nullopt;
      }
      return values.at(row).get<double>();
    };
    if (name == "greedy_tokens") {
      const std::optional<double> margin = margin_at("greedy_tokens");
      if (!margin) return std::nullopt;
      const std::string logits =
          row == 0 ? "prefill/logits" : "decode." + std::to_string(row - 1) + "/logits";
      double top = 0.0;
      if (set_.has_expected(logits)) {
        const std::vector<double> values = as_doubles(set_.expected_tensor(logits));
        const int64_t vocab = set_.expected_tensor(logits).shape[1];
        top = *std::max_element(values.end() - vocab, values.end());
      }
      return Decision{*margin, resolution(ToleranceClass::kLogits, top)};
    }
    const char* key = name == "sampled_tokens" ? "sampled_tokens"
                      : name == "tokens"       ? "tokens"
                                               : "";
    if (const std::optional<double> margin = margin_at(key)) {
      return Decision{*margin, resolution(ToleranceClass::kProbability, 1.0)};
    }
    return std::nullopt;
  }

  // Each differing row is judged on its own: rows of top-k indices (tokens) and of teacher-forced
  // greedy tokens do not depend on one another. A sampled generation is one sequence, so once a
  // sampled token differs at a near-tie, the tokens after it may differ too.
  void check_integers(const std::string& name, const std::vector<double>& expected,
                      const std::vector<double>& actual, const std::vector<int64_t>& shape,
                      TensorReport& report) const {
    const int64_t width = shape.size() <= 1 ? 1 : shape.back();
    const int64_t rows = width == 0 ? 0 : report.elements / width;
    const bool one_sequence = name == "sampled_tokens";
    std::string first_near_tie, first_failure;
    for (int64_t row = 0; row < rows; ++row) {
      bool row_differs = false;
      for (int64_t j = 0; j < width; ++j) {
        if (expected[row * width + j] != actual[row * width + j]) {
          row_differs = true;
          ++report.out_of_tolerance;
        }
      }
      if (!row_differs || !first_failure.empty()) continue;
      if (one_sequence && !first_near_tie.empty()) continue;
      const std::optional<Decision> d = decision(name, row, width);
      char text[200];
      // An exact tie (margin 0) is the tie rule's to decide, not rounding's: never excused.
      if (d && d->margin > 0.0 && d->margin < d->resolution) {
        std::snprintf(text, sizeof text,
                      "row %lld differs where the golden margin %.3g is below the %s "
                      "resolution %.3g: a near-tie",
                      static_cast<long long>(row), d->margin, precision_name(options_.precision),
                      d->resolution);
        if (first_near_tie.empty()) first_near_tie = text;
      } else {
        if (d) {
          std::snprintf(text, sizeof text,
                        "row %lld differs although its golden margin %.3g is above the %s "
                        "resolution %.3g",
                        static_cast<long long>(row), d->margin, precision_name(options_.precision),
                        d->resolution);
        } else {
          std::snprintf(text, sizeof text, "row %lld differs", static_cast<long long>(row));
        }
        first_failure = text;
      }
    }
    if (!first_failure.empty()) {
      report.status = TensorStatus::kFail;
      report.note = first_failure;
    } else if (!first_near_tie.empty()) {
      report.status = TensorStatus::kNearTie;
      report.note = first_near_tie;
    }
  }

  TensorReport check(const ExpectedTensor& entry, const TensorRecord* candidate) const {
    const TensorRecord& golden = set_.expected_tensor(entry.name);
    TensorReport report;
    report.name = entry.name;
    report.op = entry.op;
    report.tolerance_class = entry.tolerance;
    report.elements = golden.numel();
    if (candidate == nullptr) {
      report.status = TensorStatus::kMissing;
      report.note = "not in the candidate";
      return report;
    }
    if (candidate->shape != golden.shape) {
      report.status = TensorStatus::kFail;
      report.note =
          "shape " + json(candidate->shape).dump() + ", expected " + json(golden.shape).dump();
      return report;
    }
    const bool integer = entry.tolerance == ToleranceClass::kExact;
    if (integer ? !is_integer(candidate->dtype) : !is_float(candidate->dtype)) {
      report.status = TensorStatus::kFail;
      report.note = std::string("dtype ") + dtype_name(candidate->dtype) + " where " +
                    (integer ? "I32 or I64" : "F32, F16, BF16 or F64") + " is expected";
      return report;
    }
    const std::vector<double> expected = as_doubles(golden);
    const std::vector<double> actual = as_doubles(*candidate);
    if (integer) {
      check_integers(entry.name, expected, actual, golden.shape, report);
    } else {
      report.tolerance = tolerance_for(entry.tolerance);
      measure_floats(expected, actual, report);
    }
    return report;
  }

 private:
  const GoldenSet& set_;
  const CompareOptions& options_;
};

std::string format_report_line(const TensorReport& t) {
  char line[400];
  if (t.status == TensorStatus::kMissing) {
    std::snprintf(line, sizeof line, "  %-14s %s\n", status_name(t.status), t.name.c_str());
  } else if (t.tolerance_class == ToleranceClass::kExact) {
    std::snprintf(line, sizeof line, "  %-14s %-48s %lld of %lld differ%s%s\n",
                  status_name(t.status), t.name.c_str(), static_cast<long long>(t.out_of_tolerance),
                  static_cast<long long>(t.elements), t.note.empty() ? "" : ": ", t.note.c_str());
  } else {
    std::snprintf(
        line, sizeof line,
        "  %-14s %-48s max abs %.2e  max rel %.2e  nmse %.2e  cos %.7f  out %lld/%lld%s%s\n",
        status_name(t.status), t.name.c_str(), t.max_abs_error, t.max_rel_error, t.nmse, t.cosine,
        static_cast<long long>(t.out_of_tolerance), static_cast<long long>(t.elements),
        t.note.empty() ? "" : ": ", t.note.c_str());
  }
  return line;
}

}  // namespace

Candidate candidate_from_file(const SafetensorsFile& file) {
  Candidate candidate;
  for (const TensorRecord& record : file.tensors()) candidate.emplace(record.name, record);
  return candidate;
}

CompareReport compare(const GoldenSet& set, const Candidate& candidate,
                      const CompareOptions& options) {
  const Checker checker(set, options);
  CompareReport report;
  report.set = set.name();
  report.precision = options.precision;
  bool after_near_tie = false;
  bool failed = false;
  for (const ExpectedTensor& entry : set.expected()) {
    const auto found = candidate.find(entry.name);
    TensorReport tensor = checker.check(entry, found == candidate.end() ? nullptr : &found->second);
    if (tensor.status != TensorStatus::kMissing) ++report.compared;
    if (tensor.status == TensorStatus::kFail && after_near_tie) {
      tensor.status = TensorStatus::kAfterNearTie;
      tensor.note += tensor.note.empty() ? "after a near-tie" : " (after a near-tie)";
    }
    if (tensor.status == TensorStatus::kNearTie) after_near_tie = true;
    const bool fails = tensor.status == TensorStatus::kFail ||
                       (tensor.status == TensorStatus::kMissing && options.require_all);
    if (fails && !report.first_failure) report.first_failure = tensor.name;
    failed = failed || fails;
    report.tensors.push_back(std::move(tensor));
  }
  for (const auto& [name, record] : candidate) {
    if (!set.has_expected(name)) report.extra.push_back(name);
  }
  report.passed = !failed && report.compared > 0;
  return report;
}

TensorReport compare_tensor(const GoldenSet& set, const std::string& name,
                            std::span<const float> candidate, const CompareOptions& options) {
  const TensorRecord& golden = set.expected_tensor(name);
  if (static_cast<int64_t>(candidate.size()) != golden.numel()) {
    TensorReport report;
    report.name = name;
    report.status = TensorStatus::kFail;
    report.note =
        std::to_string(candidate.size()) + " values, expected " + std::to_string(golden.numel());
    return report;
  }
  const TensorRecord record = make_f32_record(name, golden.shape, candidate);
  ExpectedTensor entry = set.expected_entry(name);
  if (entry.tolerance == ToleranceClass::kExact) entry.tolerance = ToleranceClass::kActivation;
  return Checker(set, options).check(entry, &record);
}

json CompareReport::to_json() const {
  json tensors_json = json::array();
  for (const TensorReport& t : tensors) {
    tensors_json.push_back({{"name", t.name},
                            {"op", t.op},
                            {"tolerance_class", tolerance_class_name(t.tolerance_class)},
                            {"status", status_name(t.status)},
                            {"elements", t.elements},
                            {"out_of_tolerance", t.out_of_tolerance},
                            {"non_finite", t.non_finite},
                            {"max_abs_error", t.max_abs_error},
                            {"max_rel_error", t.max_rel_error},
                            {"nmse", t.nmse},
                            {"cosine", t.cosine},
                            {"rtol", t.tolerance.rtol},
                            {"atol", t.tolerance.atol},
                            {"note", t.note}});
  }
  return {{"set", set},
          {"precision", precision_name(precision)},
          {"passed", passed},
          {"compared", compared},
          {"first_failure", first_failure ? json(*first_failure) : json(nullptr)},
          {"extra", extra},
          {"tensors", tensors_json}};
}

std::string CompareReport::to_text(bool all_tensors) const {
  std::ostringstream out;
  out << "golden set " << set << ", candidate at " << precision_name(precision) << "\n";
  int64_t counts[5] = {0, 0, 0, 0, 0};
  double largest_error = 0.0;
  for (const TensorReport& t : tensors) {
    ++counts[static_cast<int>(t.status)];
    if (t.status != TensorStatus::kMissing)
      largest_error = std::max(largest_error, t.max_abs_error);
    if (all_tensors || t.status != TensorStatus::kPass) out << format_report_line(t);
  }
  for (const std::string& name : extra) out << "  extra          " << name << " (not in the set)\n";
  char summary[200];
  std::snprintf(summary, sizeof summary,
                "%lld of %zu tensors compared: %lld pass, %lld near-tie, %lld after a near-tie, "
                "%lld fail; %lld missing, %zu extra; largest abs error %.3g\n",
                static_cast<long long>(compared), tensors.size(),
                static_cast<long long>(counts[static_cast<int>(TensorStatus::kPass)]),
                static_cast<long long>(counts[static_cast<int>(TensorStatus::kNearTie)]),
                static_cast<long long>(counts[static_cast<int>(TensorStatus::kAfterNearTie)]),
                static_cast<long long>(counts[static_cast<int>(TensorStatus::kFail)]),
                static_cast<long long>(counts[static_cast<int>(TensorStatus::kMissing)]),
                extra.size(), largest_error);
  out << summary;
  if (passed) {
    out << "PASS\n";
  } else if (first_failure) {
    out << "FAIL: the first failing tensor is " << *first_failure << ": look there first\n";
  } else {
    out << "FAIL: the candidate has none of the set's tensors\n";
  }
  return out.str();
}

}  // namespace moeref::golden
