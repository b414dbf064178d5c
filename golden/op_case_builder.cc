#include "golden/op_case_builder.h"

#include <utility>

#include "ref/generation/philox.h"
#include "ref/io/version.h"

namespace moeref::golden {

using nlohmann::json;

namespace {
constexpr uint32_t kOpCaseStream = 0x4F504341;  // "OPCA"
}  // namespace

std::vector<float> unit_stream(std::string_view case_name, std::string_view tensor, int64_t n,
                               uint32_t seed) {
  const PhiloxKey key = {fnv1a32(case_name), seed};
  const uint32_t tensor_word = fnv1a32(tensor);
  std::vector<float> t(static_cast<size_t>(n));
  for (int64_t block = 0; block * 4 < n; ++block) {
    const auto b = static_cast<uint64_t>(block);
    const PhiloxCounter bits = philox4x32_10(
        {static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), tensor_word, kOpCaseStream},
        key);
    for (int64_t w = 0; w < 4 && block * 4 + w < n; ++w) {
      t[block * 4 + w] = 2.0f * uniform_from_bits(bits[w]) - 1.0f;
    }
  }
  return t;
}

std::vector<int64_t> to_int64(const std::vector<int32_t>& values) {
  return {values.begin(), values.end()};
}

CaseBuilder::CaseBuilder(const std::string& name, std::string op, const std::string& description,
                         json parameters, uint32_t seed)
    : name_(name), op_(std::move(op)), seed_(seed) {
  result_.manifest = {{"format_version", kFormatVersion},
                      {"kind", "op"},
                      {"case", name},
                      {"description", description},
                      {"moeref_version", version()},
                      {"git_commit", git_commit()},
                      {"op", op_},
                      {"parameters", std::move(parameters)}};
}

std::vector<float> CaseBuilder::random_rows(const std::string& tensor,
                                            const std::vector<int64_t>& shape,
                                            const std::vector<float>& scales,
                                            const std::vector<float>& offsets) {
  std::vector<float> values = stream(tensor, shape_numel(shape));
  const size_t row_size = values.size() / scales.size();
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = offsets[i / row_size] + scales[i / row_size] * values[i];
  }
  generation_[tensor] = {{"row_scale", scales}, {"row_offset", offsets}};
  result_.inputs.push_back(make_f32_record(tensor, shape, values));
  return values;
}

std::vector<float> CaseBuilder::random(const std::string& tensor, const std::vector<int64_t>& shape,
                                       float scale, float offset) {
  std::vector<float> values = stream(tensor, shape_numel(shape));
  for (float& v : values) v = offset + scale * v;
  generation_[tensor] = {{"scale", scale}, {"offset", offset}};
  result_.inputs.push_back(make_f32_record(tensor, shape, values));
  return values;
}

std::vector<float> CaseBuilder::stream(const std::string& tensor, int64_t n) const {
  return unit_stream(name_, tensor, n, seed_);
}

void CaseBuilder::input(TensorRecord record, const std::string& how_made) {
  generation_[record.name] = how_made;
  result_.inputs.push_back(std::move(record));
}

void CaseBuilder::output(TensorRecord record, ToleranceClass tolerance) {
  result_.expected.push_back({record.name, op_, tolerance});
  result_.outputs.push_back(std::move(record));
}

void CaseBuilder::output(TensorRecord record, const TensorKind& kind) {
  result_.expected.push_back({record.name, kind.op, kind.tolerance});
  result_.outputs.push_back(std::move(record));
}

OpCase CaseBuilder::finish() {
  result_.manifest["input_generation"] = generation_;
  return std::move(result_);
}

FeedForwardWeights random_ffn(CaseBuilder& c, const std::string& prefix, const std::string& suffix,
                              Activation activation, int64_t d_model, int64_t d_ff) {
  FeedForwardWeights w;
  if (activation == Activation::kSwiGlu) {
    w.gate_proj =
        Tensor({d_ff, d_model}, c.random(prefix + "gate_proj" + suffix, {d_ff, d_model}, 0.375f));
  }
  w.up_proj =
      Tensor({d_ff, d_model}, c.random(prefix + "up_proj" + suffix, {d_ff, d_model}, 0.375f));
  w.down_proj =
      Tensor({d_model, d_ff}, c.random(prefix + "down_proj" + suffix, {d_model, d_ff}, 0.25f));
  return w;
}

const char* activation_name(Activation activation) {
  return activation == Activation::kSwiGlu ? "swiglu" : "gelu";
}

}  // namespace moeref::golden
