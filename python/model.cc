// moeref.Model, moeref.speculative_generate and moeref.Engine: the reference model on the
// caller's config and weights, its traces under the golden sets' names, generation, speculative
// decoding and continuous batching one engine step at a time.
#include "ref/model/model.h"

#include <pybind11/stl.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "python/arrays.h"
#include "python/bindings.h"
#include "python/paths.h"
#include "ref/generation/engine.h"
#include "ref/generation/generate.h"
#include "ref/generation/speculative.h"
#include "ref/io/config.h"
#include "ref/model/tracer.h"
#include "ref/model/weights.h"

namespace moeref::python {

namespace {

using py::arg;

ModelConfig config_of(const py::object& config) {
  if (is_path(config)) return load_config(path_of(config));
  if (py::isinstance<py::dict>(config)) {
    return config_from_json(json_from_python(config, "config"), "config");
  }
  throw py::type_error("config must be a dict or the path of a config file, got " +
                       py::str(py::type::handle_of(config).attr("__name__")).cast<std::string>());
}

ModelWeights weights_of(const ModelConfig& config, const py::object& weights) {
  if (weights.is_none()) return init_weights(config);
  if (is_path(weights)) return load_weights(config, path_of(weights));
  if (!py::isinstance<py::dict>(weights)) {
    throw py::type_error(
        "weights must be None, a dict of arrays or the path of a safetensors "
        "file");
  }
  std::vector<TensorRecord> records;
  for (const auto& [key, value] : py::reinterpret_borrow<py::dict>(weights)) {
    const std::string name = py::str(key).cast<std::string>();
    records.push_back(record_from_array(name, value, "weights['" + name + "']"));
  }
  return load_weights(config, records, "weights");
}

std::unique_ptr<Model> make_model(const py::object& config_in, const py::object& weights_in) {
  ModelConfig config = config_of(config_in);
  ModelWeights weights = weights_of(config, weights_in);
  return std::make_unique<Model>(std::move(config), std::move(weights));
}

// The image argument of generation: [channels, image_size, image_size], checked by the model.
std::optional<Tensor> image_of(const py::object& image) {
  if (image.is_none()) return std::nullopt;
  return tensor_from_operand(image, "image", {kAnySize, kAnySize, kAnySize});
}

SamplingParams sampling_of(double temperature, int64_t top_k, double top_p, uint64_t seed) {
  return {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = seed};
}

uint32_t request_word(int64_t value) {
  if (value < 0 || value > 0xffffffffLL) {
    throw py::value_error("request_id must be in 0..2^32-1, got " + std::to_string(value));
  }
  return static_cast<uint32_t>(value);
}

// Read-only views of the model's weights: no copy, kept alive by the model object.
py::dict weight_arrays(const py::object& self) {
  const Model& model = self.cast<const Model&>();
  py::dict arrays;
  for (const TensorView& view : weight_views(model.config(), model.weights())) {
    py::array array(py::dtype::of<float>(),
                    std::vector<py::ssize_t>(view.shape.begin(), view.shape.end()),
                    reinterpret_cast<const float*>(view.bytes.data()), self);
    py::detail::array_proxy(array.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    arrays[py::str(view.name)] = array;
  }
  return arrays;
}

// A greedy generation of decode_steps + 1 tokens, traced: "prefill/...", "decode.i/..." (and
// "image/..." with an image), then "greedy_tokens", as a model set names them.
py::dict trace(const Model& model, const py::object& tokens, int64_t decode_steps,
               const py::object& image, int64_t image_position) {
  require_at_least(decode_steps, 0, "decode_steps");
  GenerationRequest request;
  request.prompt = int32_operand(tokens, "tokens");
  request.max_new_tokens = decode_steps + 1;
  request.image = image_of(image);
  request.image_position = image_position;
  TraceRecorder recorder;
  GenerationResult result;
  {
    py::gil_scoped_release release;
    result = generate(model, request, &recorder);
  }
  py::dict traced = dict_from_records(recorder.records());
  traced["greedy_tokens"] = array_from_record(make_i32_record(
      "greedy_tokens", {static_cast<int64_t>(result.tokens.size())}, result.tokens));
  return traced;
}

py::dict run_generation(const Model& model, const py::object& prompt, int64_t max_new_tokens,
                        double temperature, int64_t top_k, double top_p, uint64_t seed,
                        int64_t request_id, const py::object& image, int64_t image_position,
                        bool traced) {
  GenerationRequest request;
  request.prompt = int32_operand(prompt, "prompt");
  request.max_new_tokens = max_new_tokens;
  request.sampling = sampling_of(temperature, top_k, top_p, seed);
  request.request_id = request_word(request_id);
  request.image = image_of(image);
  request.image_position = image_position;
  TraceRecorder recorder;
  GenerationResult result;
  {
    py::gil_scoped_release release;
    result = generate(model, request, traced ? &recorder : nullptr);
  }
  py::dict out;
  out["tokens"] = result.tokens;
  out["stopped_at_eos"] = result.stopped_at_eos;
  if (traced) out["trace"] = dict_from_records(recorder.records());
  return out;
}

py::dict encode_image(const Model& model, const py::object& image_in) {
  const Tensor image = tensor_from_operand(image_in, "image", {kAnySize, kAnySize, kAnySize});
  TraceRecorder recorder;
  {
    py::gil_scoped_release release;
    model.encode_image(image, &recorder);
  }
  return dict_from_records(recorder.records());
}

py::dict speculative(const Model& target, const Model& draft, const py::object& prompt,
                     int64_t max_new_tokens, int64_t gamma, bool adaptive_gamma, double temperature,
                     int64_t top_k, double top_p, uint64_t seed, int64_t request_id, bool traced) {
  GenerationRequest request;
  request.prompt = int32_operand(prompt, "prompt");
  request.max_new_tokens = max_new_tokens;
  request.sampling = sampling_of(temperature, top_k, top_p, seed);
  request.request_id = request_word(request_id);
  SpeculativeOptions options;
  options.gamma = gamma;
  options.adaptive_gamma = adaptive_gamma;
  TraceRecorder recorder;
  SpeculativeResult result;
  {
    py::gil_scoped_release release;
    result = speculative_generate(target, draft, request, options, traced ? &recorder : nullptr);
  }
  const SpeculativeStats& s = result.stats;
  py::dict stats;
  stats["blocks"] = s.blocks;
  stats["drafted"] = s.drafted;
  stats["accepted"] = s.accepted;
  stats["target_forwards"] = s.target_forwards;
  stats["draft_forwards"] = s.draft_forwards;
  stats["emitted"] = s.emitted;
  stats["acceptance_rate"] = s.acceptance_rate();
  py::dict out;
  out["tokens"] = result.tokens;
  out["stopped_at_eos"] = result.stopped_at_eos;
  out["stats"] = stats;
  if (traced) out["trace"] = dict_from_records(recorder.records());
  return out;
}

std::unique_ptr<Model> shallow_draft(const Model& target, int64_t n_layers) {
  DraftModel draft = make_shallow_draft(target.config(), target.weights(), n_layers);
  return std::make_unique<Model>(std::move(draft.config), std::move(draft.weights));
}

// The engine with the model it serves (kept alive by the Python object: py::keep_alive).
class PyEngine {
 public:
  PyEngine(const Model& model, EngineLimits limits)
      : engine_(model, limits), vocab_size_(model.config().vocab_size) {}

  void submit(int64_t id, const py::object& prompt, int64_t max_new_tokens, double temperature,
              int64_t top_k, double top_p, uint64_t seed, int64_t arrival_step) {
    require_at_least(id, 0, "id");
    require_at_least(arrival_step, 0, "arrival_step");
    EngineRequest request;
    request.id = id;
    request.prompt = int32_operand(prompt, "prompt");
    request.max_new_tokens = max_new_tokens;
    request.sampling = sampling_of(temperature, top_k, top_p, seed);
    request.arrival_step = arrival_step;
    engine_.submit(std::move(request));
  }

  // One engine step: what it scheduled and decided, and with trace=True its traced tensors
  // under the names a batching set gives step s ("schedule", "block_tables", "sampled", ...).
  py::dict step(bool traced) {
    TraceRecorder recorder;
    StepRecord record;
    {
      py::gil_scoped_release release;
      record = engine_.step(traced ? &recorder : nullptr);
    }
    py::list chunks;
    for (const ScheduledChunk& c : record.chunks) {
      py::dict chunk;
      chunk["request"] = c.request;
      chunk["start_position"] = c.start_position;
      chunk["n_tokens"] = c.n_tokens;
      chunk["prefill"] = c.prefill;
      chunks.append(chunk);
    }
    py::dict out;
    out["step"] = record.step;
    out["chunks"] = chunks;
    out["block_tables"] = record.block_tables;
    out["admitted"] = record.admitted;
    out["preempted"] = record.preempted;
    out["finished"] = record.finished;
    out["sampled"] = record.sampled;
    out["running"] = record.running;
    out["used_blocks"] = record.used_blocks;
    if (traced) out["trace"] = dict_from_records(recorder.records());
    return out;
  }

  py::dict outcomes() const {
    py::dict out;
    for (const auto& [id, o] : engine_.outcomes()) {
      py::dict outcome;
      outcome["status"] = request_status_name(o.status);
      outcome["tokens"] = o.tokens;
      FloatArray logits = new_float_array({static_cast<int64_t>(o.tokens.size()), vocab_size_});
      std::copy(o.logits.begin(), o.logits.end(), logits.mutable_data());
      outcome["logits"] = logits;
      outcome["stopped_at_eos"] = o.stopped_at_eos;
      outcome["preemptions"] = o.preemptions;
      outcome["error"] = o.error;
      out[py::int_(id)] = outcome;
    }
    return out;
  }

  Engine& engine() { return engine_; }

 private:
  Engine engine_;
  int64_t vocab_size_;
};

}  // namespace

void bind_model(py::module_& module) {
  py::class_<Model>(module, "Model",
                    "The reference model: Model(config, weights=None), config a dict or a config "
                    "file's path, weights None (the config's deterministic initialisation), a "
                    "safetensors file's path or a dict of float32 arrays by name")
      .def(py::init(&make_model), arg("config"), arg("weights") = py::none())
      .def_property_readonly(
          "config", [](const Model& m) { return python_from_json(config_to_json(m.config())); })
      .def("weights", &weight_arrays,
           "every weight by name, read-only views of the model's own memory")
      .def(
          "save_weights",
          [](const Model& m, const py::object& path) {
            save_weights(m.config(), m.weights(), path_of(path));
          },
          arg("path"))
      .def("trace", &trace, arg("tokens"), arg("decode_steps") = 0, arg("image") = py::none(),
           arg("image_position") = 0,
           "every intermediate of a greedy generation of decode_steps + 1 tokens, by the golden "
           "sets' names (prefill/..., decode.i/..., greedy_tokens)")
      .def("generate", &run_generation, arg("prompt"), arg("max_new_tokens") = 16,
           arg("temperature") = 0.0, arg("top_k") = 0, arg("top_p") = 1.0, arg("seed") = 0,
           arg("request_id") = 0, arg("image") = py::none(), arg("image_position") = 0,
           arg("trace") = false, "-> {'tokens', 'stopped_at_eos'[, 'trace']}")
      .def("encode_image", &encode_image, arg("image"),
           "the vision tower on image [channels, size, size] -> its traced tensors (vision.*, "
           "vision.tokens, layers.L.xattn.k/v)")
      .def("shallow_draft", &shallow_draft, arg("n_layers"),
           "a draft for speculative decoding: this model's first n_layers layers");

  module.def("speculative_generate", &speculative, arg("target"), arg("draft"), arg("prompt"),
             arg("max_new_tokens") = 16, arg("gamma") = 4, arg("adaptive_gamma") = false,
             arg("temperature") = 0.0, arg("top_k") = 0, arg("top_p") = 1.0, arg("seed") = 0,
             arg("request_id") = 0, arg("trace") = false,
             "speculative decoding (ref/generation/speculative.h) -> {'tokens', 'stopped_at_eos', "
             "'stats'[, "
             "'trace']}");

  py::class_<PyEngine>(
      module, "Engine",
      "continuous batching over a paged KV cache (ref/generation/engine.h), one step at a "
      "time")
      .def(py::init([](const Model& model, int64_t max_sequences, int64_t max_tokens_per_step,
                       int64_t n_blocks, int64_t block_size) {
             return std::make_unique<PyEngine>(
                 model, EngineLimits{max_sequences, max_tokens_per_step, n_blocks, block_size});
           }),
           arg("model"), arg("max_sequences") = 8, arg("max_tokens_per_step") = 64,
           arg("n_blocks") = 64, arg("block_size") = 8, py::keep_alive<1, 2>())
      .def("submit", &PyEngine::submit, arg("id"), arg("prompt"), arg("max_new_tokens") = 16,
           arg("temperature") = 0.0, arg("top_k") = 0, arg("top_p") = 1.0, arg("seed") = 0,
           arg("arrival_step") = 0)
      .def("step", &PyEngine::step, arg("trace") = false)
      .def("done", [](PyEngine& e) { return e.engine().done(); })
      .def("skip_idle_steps", [](PyEngine& e) { return e.engine().skip_idle_steps(); })
      .def("outcomes", &PyEngine::outcomes)
      .def("summary",
           [](PyEngine& e) { return python_from_json(summary_json(e.engine().summary())); });
}

}  // namespace moeref::python
