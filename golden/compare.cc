#include "golden/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

#include "golden/anchored_run.h"
#include "golden/calibration.h"
#include "golden/decisions.h"
#include "golden/fp16.h"
#include "ref/generation/philox.h"

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

}  // namespace

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
        values[i] = fp16_to_float(load<uint16_t>(data, i));
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

int32_t as_decision(double value) {
  return value >= INT32_MIN && value <= INT32_MAX ? static_cast<int32_t>(value) : -1;
}

namespace {

// Fills the metrics and the elementwise verdict; returns the largest finite |e|.
double measure_floats(const std::vector<double>& expected, std::span<const double> actual,
                      TensorReport& report) {
  double squared_error = 0, squared_expected = 0, squared_actual = 0, product = 0;
  double largest_expected = 0;
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
    largest_expected = std::max(largest_expected, std::fabs(e));
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
  return largest_expected;
}

// The per-tensor gates (golden/calibration.h): the tensor's max |a - e| and NMSE against a
// multiple of the worst honest emulated backend's on the same tensor. The baseline is floored at
// kFloorRoundings roundings of the tensor's largest value (their square, relative, for the NMSE):
// where every honest emulation computes a tensor exactly (an embedding lookup, say), another
// honest order of the same sums still differs in the last bits.
constexpr double kFloorRoundings = 4.0;

void apply_gates(const HonestError& honest, const GateFactors& factors, double unit_roundoff,
                 double largest_expected, Precision precision, TensorReport& report) {
  const double floor = kFloorRoundings * unit_roundoff;
  const double max_abs_base = std::max(honest.max_abs_error, floor * largest_expected);
  const double nmse_base = std::max(honest.nmse, floor * floor);
  report.max_abs_bound = factors.max_abs * max_abs_base;
  report.nmse_bound = factors.nmse * nmse_base;
  if (report.status == TensorStatus::kFail) return;
  char text[240];
  if (report.max_abs_error > report.max_abs_bound) {
    std::snprintf(text, sizeof text,
                  "max abs error %.3g is above the %s gate %.3g (%g times the worst honest %s "
                  "backend's %.3g, floored at %g roundings)",
                  report.max_abs_error, precision_name(precision), report.max_abs_bound,
                  factors.max_abs, precision_name(precision), honest.max_abs_error,
                  kFloorRoundings);
  } else if (report.nmse > report.nmse_bound) {
    std::snprintf(
        text, sizeof text,
        "NMSE %.3g is above the %s gate %.3g (%g times the worst honest %s backend's %.3g, "
        "floored at %g roundings)",
        report.nmse, precision_name(precision), report.nmse_bound, factors.nmse,
        precision_name(precision), honest.nmse, kFloorRoundings);
  } else {
    return;
  }
  report.status = TensorStatus::kFail;
  report.note = text;
}

std::span<const float> row_of(const std::vector<float>& values, int64_t width, int64_t row) {
  return {values.data() + row * width, static_cast<size_t>(width)};
}

SamplingParams sampling_params(const json& object) {
  return {.temperature = object.at("temperature").get<double>(),
          .top_k = object.at("top_k").get<int64_t>(),
          .top_p = object.at("top_p").get<double>(),
          .seed = object.at("seed").get<uint64_t>()};
}

class Checker {
 public:
  Checker(const GoldenSet& set, const CompareOptions& options, const Candidate& candidate,
          const Candidate* anchored)
      : set_(set), options_(options), candidate_(candidate), anchored_(anchored) {}

  Tolerance tolerance_for(ToleranceClass c) const {
    Tolerance t = default_tolerance(options_.precision, c);
    if (options_.rtol) t.rtol = *options_.rtol;
    if (options_.atol) t.atol = *options_.atol;
    return t;
  }

  // The honest backends' worst errors on this tensor at the precision, where the set stores them
  // and neither the options nor an override turn the gates off.
  std::optional<HonestError> gate_baseline(const std::string& name) const {
    if (!options_.per_tensor_gates || options_.rtol || options_.atol) return std::nullopt;
    return honest_error(set_, options_.precision, name);
  }

  // The tolerance of the scores a decision was made on (decision_tolerance), or the class
  // tolerance where the options turn the per-tensor gates off or override it.
  Tolerance score_tolerance(ToleranceClass c, const std::string& score_tensor) const {
    if (!options_.per_tensor_gates || options_.rtol || options_.atol) return tolerance_for(c);
    return decision_tolerance(set_, options_.precision, c, score_tensor);
  }

  // What the candidate's tensor of this name is compared with: the re-anchored reference's where
  // the checker re-ran it (golden/anchored_run.h), the set's otherwise.
  const TensorRecord& expected(const std::string& name) const {
    if (anchored_ != nullptr) {
      const auto found = anchored_->find(name);
      if (found != anchored_->end()) return found->second;
    }
    return set_.expected_tensor(name);
  }

  // Judges row `row` of a decision tensor, where expected and actual differ, on the scores the
  // reference chose from (golden/decisions.h); nullopt for a tensor that is no judged decision.
  std::optional<DecisionVerdict> judge(const std::string& name, int64_t row,
                                       std::span<const int32_t> expected_row,
                                       std::span<const int32_t> actual_row) const {
    const Precision p = options_.precision;
    const json& manifest = set_.manifest();
    if (traced_name(name).ends_with("moe.topk_indices") ||
        (name == "indices" && set_.inputs().contains("probs"))) {
      const std::string probs_name =
          name == "indices"
              ? std::string("probs")
              : name.substr(0, name.size() - std::string("topk_indices").size()) + "router_probs";
      if (name != "indices" && !set_.has_expected(probs_name)) return std::nullopt;
      const TensorRecord& probs =
          name == "indices" ? set_.inputs().at("probs") : expected(probs_name);
      return judge_top_k(row_of(probs.to_f32(), probs.shape.back(), row), expected_row, actual_row,
                         score_tolerance(ToleranceClass::kProbability, probs_name), p);
    }
    if (name == "greedy_tokens" && set_.kind() == "model") {
      const std::string logits_name =
          row == 0 ? "prefill/logits" : "decode." + std::to_string(row - 1) + "/logits";
      if (!set_.has_expected(logits_name)) return std::nullopt;
      const TensorRecord& logits = expected(logits_name);
      return judge_greedy(row_of(logits.to_f32(), logits.shape[1], logits.shape[0] - 1),
                          expected_row[0], actual_row[0],
                          score_tolerance(ToleranceClass::kLogits, logits_name), p);
    }
    if (name == "sampled_tokens" && set_.kind() == "model" && anchored_ != nullptr) {
      const TensorRecord& logits = anchored_->at("sampled_logits");
      const json& inputs = manifest.at("inputs");
      const auto position =
          static_cast<uint32_t>(inputs.at("prompt").size()) + static_cast<uint32_t>(row);
      const SamplingParams params = sampling_params(inputs.at("sampling"));
      const double u = generation_uniform(params.seed, 0, position, 0, RandomStream::kSampling);
      return judge_sampled(row_of(logits.to_f32(), logits.shape[1], row), params, u,
                           expected_row[0], actual_row[0],
                           tolerance_for(params.temperature == 0.0 ? ToleranceClass::kLogits
                                                                   : ToleranceClass::kProbability),
                           p);
    }
    if (set_.kind() == "speculative")
      return judge_speculative(name, row, expected_row[0], actual_row[0]);
    if (set_.kind() == "batching" && traced_name(name) == "sampled") {
      if (actual_row[0] != expected_row[0]) {
        return DecisionVerdict{false, "request " + std::to_string(actual_row[0]) +
                                          " where the schedule samples for request " +
                                          std::to_string(expected_row[0])};
      }
      return judge_request_token(expected_row[0], generated_before(name, row, expected_row[0]),
                                 expected_row[1], actual_row[1]);
    }
    if (set_.kind() == "batching" && traced_name(name) == "tokens") {
      return judge_request_token(std::stoll(name.substr(std::string("request.").size())), row,
                                 expected_row[0], actual_row[0]);
    }
    if (name == "tokens" && set_.kind() == "op" && set_.inputs().contains("logits")) {
      const TensorRecord& logits = set_.inputs().at("logits");
      const json& parameters = manifest.at("parameters");
      SamplingParams params{};
      double u = 0.0;
      if (manifest.at("op") == "sampling") {
        params = sampling_params(parameters);
        u = generation_uniform(params.seed, parameters.at("draw").get<uint32_t>(),
                               static_cast<uint32_t>(row), parameters.at("request").get<uint32_t>(),
                               RandomStream::kSampling);
      }
      const Tolerance tolerance = tolerance_for(
          params.temperature == 0.0 ? ToleranceClass::kLogits : ToleranceClass::kProbability);
      return judge_sampled(row_of(logits.to_f32(), logits.shape[1], row), params, u,
                           expected_row[0], actual_row[0], tolerance, p);
    }
    return std::nullopt;
  }

  // A speculative block's decision (ref/generation/speculative.h) on the block's q and p: row `row`
  // of "mode/block.b/draft_tokens", "accepted" or "final_token".
  std::optional<DecisionVerdict> judge_speculative(const std::string& name, int64_t row,
                                                   int32_t expected_value,
                                                   int32_t actual_value) const {
    const size_t slash = name.rfind('/');
    const std::string prefix = name.substr(0, slash + 1);
    const std::string field = name.substr(slash + 1);
    if (!has(prefix + "draft_probs") || !has(prefix + "target_probs")) return std::nullopt;
    const bool greedy = name.starts_with("greedy/");
    const TensorRecord& q = expected(prefix + "draft_probs");
    const TensorRecord& p = expected(prefix + "target_probs");
    const int64_t vocab = p.shape.back();
    const std::vector<float> q_values = q.to_f32();
    const std::vector<float> p_values = p.to_f32();
    const Tolerance tolerance =
        score_tolerance(ToleranceClass::kProbability, prefix + "target_probs");
    const Precision precision = options_.precision;
    if (field == "draft_tokens") {
      const SamplingParams params = sampling_params(set_.manifest().at("inputs").at("sampling"));
      const int64_t position = expected(prefix + "position").to_i32().at(0) + row;
      const double u = greedy ? 0.0
                              : generation_uniform(params.seed, 0, static_cast<uint32_t>(position),
                                                   0, RandomStream::kDraftProposal);
      return judge_drawn(row_of(q_values, vocab, row), greedy, u, expected_value, actual_value,
                         score_tolerance(ToleranceClass::kProbability, prefix + "draft_probs"),
                         precision);
    }
    if (field == "accepted") {
      // The proposal tested is the one the candidate fed (its own), which the re-run followed.
      const std::string proposals = prefix + "draft_tokens";
      const auto found = candidate_.find(proposals);
      std::vector<int32_t> fed = expected(proposals).to_i32();
      if (found != candidate_.end()) {
        fed.clear();
        for (double value : as_doubles(found->second)) fed.push_back(as_decision(value));
      }
      if (row >= std::ssize(fed) || row >= q.shape[0]) return std::nullopt;
      const double u = expected(prefix + "accept_u").to_f32().at(static_cast<size_t>(row));
      return judge_acceptance(row_of(p_values, vocab, row), row_of(q_values, vocab, row),
                              fed[static_cast<size_t>(row)], greedy, u, actual_value, tolerance,
                              precision);
    }
    if (field == "final_token") {
      const int32_t kind = expected(prefix + "final_kind").to_i32().at(0);
      const double u = expected(prefix + "final_u").to_f32().at(0);
      if (kind == 1) {
        return judge_drawn(row_of(p_values, vocab, p.shape[0] - 1), greedy, u, expected_value,
                           actual_value, tolerance, precision);
      }
      const int64_t i = expected(prefix + "accepted").numel() - 1;
      if (kind != 0 || i < 0 || i >= q.shape[0]) return std::nullopt;
      const std::span<const float> p_row = row_of(p_values, vocab, i);
      if (greedy) {
        return judge_drawn(p_row, true, 0.0, expected_value, actual_value, tolerance, precision);
      }
      const std::span<const float> q_row = row_of(q_values, vocab, i);
      std::vector<float> residual(p_row.size());
      bool empty = true;
      for (size_t t = 0; t < residual.size(); ++t) {
        residual[t] = std::max(0.0f, p_row[t] - q_row[t]);
        empty = empty && residual[t] <= 0.0f;
      }
      // Two probabilities' errors in each residual weight.
      const Tolerance doubled{2.0 * tolerance.rtol, 2.0 * tolerance.atol};
      return judge_drawn(empty ? p_row : std::span<const float>(residual), false, u, expected_value,
                         actual_value, doubled, precision);
    }
    return std::nullopt;
  }

  bool has(const std::string& name) const {
    return (anchored_ != nullptr && anchored_->contains(name)) || set_.has_expected(name);
  }

  // A batching set's request `id`: how many tokens it generated before row `row` of the step
  // tensor `name` ("step.s/sampled"), by the set's schedule.
  int64_t generated_before(const std::string& name, int64_t row, int32_t id) const {
    const int64_t step = std::stoll(name.substr(std::string("step.").size()));
    int64_t count = 0;
    for (int64_t s = 0; s <= step; ++s) {
      const std::vector<int32_t> sampled =
          set_.expected_tensor("step." + std::to_string(s) + "/sampled").to_i32();
      const auto rows = static_cast<int64_t>(sampled.size()) / 2;
      for (int64_t r = 0; r < (s == step ? row : rows); ++r) count += sampled[r * 2] == id;
    }
    return count;
  }

  // A batching set's token `k` of request `id`, chosen from that request's logits row k with its
  // sampling parameters and the Philox draw at its position (ref/generation/engine.h).
  std::optional<DecisionVerdict> judge_request_token(int64_t id, int64_t k, int32_t expected_token,
                                                     int32_t actual_token) const {
    const std::string logits_name = "request." + std::to_string(id) + "/logits";
    if (!set_.has_expected(logits_name)) return std::nullopt;
    const TensorRecord& logits = expected(logits_name);
    if (k >= logits.shape[0]) return std::nullopt;
    for (const json& request : set_.manifest().at("requests")) {
      if (request.at("id").get<int64_t>() != id) continue;
      const SamplingParams params = sampling_params(request.at("sampling"));
      const auto position = static_cast<uint32_t>(request.at("prompt").size() + k);
      const bool greedy = params.temperature == 0.0;
      const double u = greedy
                           ? 0.0
                           : generation_uniform(params.seed, 0, position, static_cast<uint32_t>(id),
                                                RandomStream::kSampling);
      const Tolerance tolerance = greedy ? score_tolerance(ToleranceClass::kLogits, logits_name)
                                         : tolerance_for(ToleranceClass::kProbability);
      return judge_sampled(row_of(logits.to_f32(), logits.shape[1], k), params, u, expected_token,
                           actual_token, tolerance, options_.precision);
    }
    return std::nullopt;
  }

  // Each differing row is judged on its own: rows of top-k indices (tokens) do not depend on one
  // another, greedy decode calls are teacher-forced, and a sampled token after a legitimate flip
  // is judged against the reference re-run on the candidate's own earlier tokens.
  void check_integers(const std::string& name, const std::vector<double>& expected_values,
                      const std::vector<double>& actual_values, const std::vector<int64_t>& shape,
                      TensorReport& report) const {
    const int64_t width = shape.size() <= 1 ? 1 : shape.back();
    const int64_t rows = width == 0 ? 0 : report.elements / width;
    std::string first_near_tie, first_failure;
    std::vector<int32_t> expected_row(static_cast<size_t>(width));
    std::vector<int32_t> actual_row(expected_row.size());
    for (int64_t row = 0; row < rows; ++row) {
      bool row_differs = false;
      for (int64_t j = 0; j < width; ++j) {
        const double e = expected_values[row * width + j];
        const double a = actual_values[row * width + j];
        expected_row[j] = static_cast<int32_t>(e);
        actual_row[j] = as_decision(a);
        if (e != a) {
          row_differs = true;
          ++report.out_of_tolerance;
        }
      }
      if (!row_differs || !first_failure.empty()) continue;
      const std::optional<DecisionVerdict> verdict = judge(name, row, expected_row, actual_row);
      const std::string where = "row " + std::to_string(row) + " differs";
      if (!verdict) {
        first_failure = where;
      } else if (!verdict->excused) {
        first_failure = where + ": " + verdict->note;
      } else if (first_near_tie.empty()) {
        first_near_tie = where + ": " + verdict->note;
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
    const TensorRecord& golden = expected(entry.name);
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
      const std::optional<HonestError> honest = gate_baseline(entry.name);
      const GateFactors factors = gate_factors(options_.precision, entry.tolerance);
      // Where an honest backend errs by more than the class allows on this tensor (RoPE angles
      // computed in fp32 at position 4095, say), the elementwise bound widens to the gate's.
      if (honest) {
        report.tolerance.atol =
            std::max(report.tolerance.atol, factors.max_abs * honest->max_abs_error);
      }
      const double largest_expected = measure_floats(expected, actual, report);
      if (honest) {
        apply_gates(*honest, factors, unit_roundoff(options_.precision), largest_expected,
                    options_.precision, report);
      }
    }
    return report;
  }

 private:
  const GoldenSet& set_;
  const CompareOptions& options_;
  const Candidate& candidate_;
  const Candidate* anchored_;
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
  std::optional<Candidate> anchored;
  if (needs_anchoring(set, candidate)) anchored = anchored_run(set, candidate);
  const Checker checker(set, options, candidate, anchored ? &*anchored : nullptr);
  CompareReport report;
  report.set = set.name();
  report.precision = options.precision;
  report.anchored = anchored.has_value();
  bool failed = false;
  const std::vector<ExpectedTensor> expected =
      anchored ? anchored_expected(set, *anchored) : set.expected();
  for (const ExpectedTensor& entry : expected) {
    const auto found = candidate.find(entry.name);
    TensorReport tensor = checker.check(entry, found == candidate.end() ? nullptr : &found->second);
    if (tensor.status != TensorStatus::kMissing) ++report.compared;
    const bool fails = tensor.status == TensorStatus::kFail ||
                       (tensor.status == TensorStatus::kMissing && options.require_all);
    if (fails && !report.first_failure) report.first_failure = tensor.name;
    failed = failed || fails;
    report.tensors.push_back(std::move(tensor));
  }
  std::set<std::string> known;
  for (const ExpectedTensor& entry : expected) known.insert(entry.name);
  for (const auto& [name, record] : candidate) {
    if (!known.contains(name)) report.extra.push_back(name);
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
  return Checker(set, options, Candidate{}, nullptr).check(entry, &record);
}

namespace {

json finite_or_null(double value) { return std::isfinite(value) ? json(value) : json(nullptr); }

}  // namespace

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
                            {"max_abs_bound", finite_or_null(t.max_abs_bound)},
                            {"nmse_bound", finite_or_null(t.nmse_bound)},
                            {"note", t.note}});
  }
  return {{"set", set},
          {"precision", precision_name(precision)},
          {"passed", passed},
          {"anchored", anchored},
          {"compared", compared},
          {"first_failure", first_failure ? json(*first_failure) : json(nullptr)},
          {"extra", extra},
          {"tensors", tensors_json}};
}

std::string CompareReport::to_text(bool all_tensors) const {
  std::ostringstream out;
  out << "golden set " << set << ", candidate at " << precision_name(precision) << "\n";
  int64_t counts[4] = {0, 0, 0, 0};
  double largest_error = 0.0;
  for (const TensorReport& t : tensors) {
    ++counts[static_cast<int>(t.status)];
    if (t.status != TensorStatus::kMissing)
      largest_error = std::max(largest_error, t.max_abs_error);
    if (all_tensors || t.status != TensorStatus::kPass) out << format_report_line(t);
  }
  for (const std::string& name : extra) out << "  extra          " << name << " (not in the set)\n";
  if (anchored) {
    out << "re-anchored: a routing or sampling decision differs, so the tensors are compared with "
           "the reference re-run on the candidate's own decisions\n";
  }
  char summary[200];
  std::snprintf(summary, sizeof summary,
                "%lld of %zu tensors compared: %lld pass, %lld near-tie, %lld fail; %lld missing, "
                "%zu extra; largest abs error %.3g\n",
                static_cast<long long>(compared), tensors.size(),
                static_cast<long long>(counts[static_cast<int>(TensorStatus::kPass)]),
                static_cast<long long>(counts[static_cast<int>(TensorStatus::kNearTie)]),
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
