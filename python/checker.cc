// The checker from Python: golden sets, compare() with the C++ checker's rules and report
// (golden/compare.h), the reference's own run of a set, and golden sets written for the caller's
// config (golden/model_case.h) or op shapes (golden/shaped_op_cases.h) with the margin search.
#include <pybind11/stl.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>

#include "golden/candidate_runner.h"
#include "golden/compare.h"
#include "golden/golden_set.h"
#include "golden/model_case.h"
#include "golden/op_cases.h"
#include "golden/shaped_op_cases.h"
#include "golden/tensor_kinds.h"
#include "golden/verify.h"
#include "python/arrays.h"
#include "python/bindings.h"
#include "python/paths.h"
#include "ref/io/config.h"
#include "ref/io/version.h"

namespace moeref::python {

namespace {

using golden::CompareOptions;
using golden::CompareReport;
using golden::GoldenSet;
using golden::TensorReport;
using py::arg;

// A trace (name -> array) as the records of a set, in the dict's order.
std::vector<TensorRecord> records_of(const py::dict& tensors, const std::string& argument) {
  std::vector<TensorRecord> records;
  for (const auto& [key, value] : tensors) {
    if (!py::isinstance<py::str>(key)) {
      throw py::type_error(argument + " must be keyed by tensor names (str)");
    }
    const std::string name = key.cast<std::string>();
    records.push_back(record_from_array(name, value, argument + "['" + name + "']"));
  }
  return records;
}

// A temporary directory, removed with everything in it when this goes out of scope.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    static std::atomic<int> counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("moeref-python-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  }
  ~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A trace of the reference's (Model.trace) as an uncalibrated set of kind "op": each tensor with
// the op and tolerance class of its name (golden/tensor_kinds.h).
GoldenSet set_of_trace(const py::dict& trace, const TemporaryDirectory& directory) {
  const std::vector<TensorRecord> records = records_of(trace, "set_or_trace");
  std::vector<golden::ExpectedTensor> expected;
  for (const TensorRecord& record : records) {
    golden::TensorKind kind;
    try {
      kind = golden::classify_model_tensor(record.name);
    } catch (const std::invalid_argument&) {
      throw py::value_error("set_or_trace['" + record.name +
                            "'] is not a traced tensor's name (docs/tracing.md)");
    }
    expected.push_back({record.name, kind.op, kind.tolerance});
  }
  const nlohmann::json manifest = {{"format_version", golden::kFormatVersion},
                                   {"kind", "op"},
                                   {"case", "trace"},
                                   {"description", "a trace handed to moeref.compare"},
                                   {"moeref_version", version()},
                                   {"git_commit", git_commit()},
                                   {"op", "trace"},
                                   {"parameters", nlohmann::json::object()}};
  golden::write_golden_set(directory.path(), manifest, {}, {}, records, expected);
  return GoldenSet::open(directory.path());
}

golden::Candidate candidate_of(const py::dict& candidate) {
  golden::Candidate records;
  for (TensorRecord& record : records_of(candidate, "candidate")) {
    std::string name = record.name;
    records.emplace(std::move(name), std::move(record));
  }
  return records;
}

CompareOptions options_of(const std::string& precision, std::optional<double> rtol,
                          std::optional<double> atol, bool require_all) {
  CompareOptions options;
  options.precision = golden::precision_from_name(precision);
  options.rtol = rtol;
  options.atol = atol;
  options.require_all = require_all;
  return options;
}

CompareReport compare(const py::object& set_or_trace, const py::object& candidate_in,
                      const std::string& precision, std::optional<double> rtol,
                      std::optional<double> atol, bool require_all) {
  if (!py::isinstance<py::dict>(candidate_in)) {
    throw py::type_error("candidate must be a dict of arrays by tensor name");
  }
  const golden::Candidate candidate = candidate_of(py::reinterpret_borrow<py::dict>(candidate_in));
  const CompareOptions options = options_of(precision, rtol, atol, require_all);
  if (py::isinstance<GoldenSet>(set_or_trace)) {
    const GoldenSet& set = set_or_trace.cast<const GoldenSet&>();
    py::gil_scoped_release release;
    return golden::compare(set, candidate, options);
  }
  if (is_path(set_or_trace)) {
    const GoldenSet set = GoldenSet::open(path_of(set_or_trace));
    py::gil_scoped_release release;
    return golden::compare(set, candidate, options);
  }
  if (py::isinstance<py::dict>(set_or_trace)) {
    const TemporaryDirectory directory;
    const GoldenSet set = set_of_trace(py::reinterpret_borrow<py::dict>(set_or_trace), directory);
    py::gil_scoped_release release;
    return golden::compare(set, candidate, options);
  }
  throw py::type_error(
      "set_or_trace must be a GoldenSet, a golden set's directory or a trace "
      "(a dict of arrays by tensor name)");
}

py::dict expected_entry(const golden::ExpectedTensor& e) {
  py::dict entry;
  entry["name"] = e.name;
  entry["op"] = e.op;
  entry["tolerance_class"] = golden::tolerance_class_name(e.tolerance);
  return entry;
}

golden::ModelCaseSpec case_spec(const py::object& config, const std::string& name,
                                const std::string& description, const py::object& prompt,
                                int64_t prompt_length, int64_t decode_steps, int64_t sampled_tokens,
                                double temperature, int64_t top_k, double top_p, uint64_t seed,
                                double margin_threshold) {
  golden::ModelCaseSpec spec;
  spec.config = is_path(config) ? load_config(path_of(config))
                                : config_from_json(json_from_python(config, "config"), "config");
  spec.name = name.empty() ? spec.config.name : name;
  spec.description = description;
  if (!prompt.is_none()) spec.prompt = int32_operand(prompt, "prompt");
  require_at_least(prompt_length, 1, "prompt_length");
  require_at_least(decode_steps, 0, "decode_steps");
  require_at_least(sampled_tokens, 0, "sampled_tokens");
  spec.prompt_length = prompt_length;
  spec.decode_steps = decode_steps;
  spec.sampled_tokens = sampled_tokens;
  spec.sampling = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = seed};
  validate(spec.sampling);
  if (!(margin_threshold >= 0.0)) {
    throw py::value_error("margin_threshold must be >= 0, got " + std::to_string(margin_threshold));
  }
  spec.margin_threshold = margin_threshold;
  return spec;
}

std::optional<golden::Precision> resolved_at_of(const std::optional<std::string>& name) {
  if (!name) return std::nullopt;
  try {
    return golden::precision_from_name(*name);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(std::string("resolved_at: ") + e.what());
  }
}

golden::OpCaseRequest op_request(const std::string& op, const py::object& shape, int64_t seed,
                                 double margin, const std::optional<std::string>& resolved_at,
                                 const std::string& name, int64_t tries) {
  if (!py::isinstance<py::dict>(shape)) {
    throw py::type_error("shape must be a dict of shape parameters (name -> value)");
  }
  if (seed < 0 || seed > UINT32_MAX) {
    throw py::value_error("seed must be in [0, 2^32), got " + std::to_string(seed));
  }
  require_at_least(tries, 1, "tries");
  golden::OpCaseRequest request;
  request.op = op;
  request.shape = json_from_python(shape, "shape");
  request.seed = static_cast<uint32_t>(seed);
  request.margin = margin;
  request.resolved_at = resolved_at_of(resolved_at);
  request.name = name;
  request.tries = tries;
  return request;
}

py::dict op_case_dict(const nlohmann::json& manifest, const std::vector<TensorRecord>& inputs,
                      const std::vector<TensorRecord>& outputs) {
  py::dict out;
  out["manifest"] = python_from_json(manifest);
  out["inputs"] = dict_from_records(inputs);
  out["outputs"] = dict_from_records(outputs);
  return out;
}

}  // namespace

void bind_checker(py::module_& module) {
  py::class_<GoldenSet>(module, "GoldenSet",
                        "a golden set opened with every integrity check (golden/golden_set.h)")
      .def(py::init([](const py::object& dir) { return GoldenSet::open(path_of(dir)); }),
           arg("dir"))
      .def_property_readonly("dir", [](const GoldenSet& s) { return s.dir().string(); })
      .def_property_readonly("name", &GoldenSet::name)
      .def_property_readonly("kind", &GoldenSet::kind)
      .def_property_readonly("manifest",
                             [](const GoldenSet& s) { return python_from_json(s.manifest()); })
      .def_property_readonly("expected",
                             [](const GoldenSet& s) {
                               py::list entries;
                               for (const auto& e : s.expected()) entries.append(expected_entry(e));
                               return entries;
                             })
      .def(
          "expected_tensor",
          [](const GoldenSet& s, const std::string& name) {
            return array_from_record(s.expected_tensor(name));
          },
          arg("name"))
      .def("trace", [](const GoldenSet& s) { return dict_from_records(s.trace().tensors()); })
      .def("inputs", [](const GoldenSet& s) { return dict_from_records(s.inputs().tensors()); })
      .def("weights",
           [](const GoldenSet& s) -> py::object {
             if (!s.weights()) return py::none();
             return dict_from_records(s.weights()->tensors());
           })
      .def("__repr__", [](const GoldenSet& s) {
        return "<moeref.GoldenSet " + s.kind() + " '" + s.name() + "' at " + s.dir().string() + ">";
      });

  py::class_<TensorReport>(module, "TensorReport", "one expected tensor's verdict and statistics")
      .def_readonly("name", &TensorReport::name)
      .def_readonly("op", &TensorReport::op)
      .def_property_readonly(
          "tolerance_class",
          [](const TensorReport& t) { return golden::tolerance_class_name(t.tolerance_class); })
      .def_property_readonly("status",
                             [](const TensorReport& t) { return golden::status_name(t.status); })
      .def_readonly("elements", &TensorReport::elements)
      .def_readonly("out_of_tolerance", &TensorReport::out_of_tolerance)
      .def_readonly("non_finite", &TensorReport::non_finite)
      .def_readonly("max_abs_error", &TensorReport::max_abs_error)
      .def_readonly("max_rel_error", &TensorReport::max_rel_error)
      .def_readonly("nmse", &TensorReport::nmse)
      .def_readonly("cosine", &TensorReport::cosine)
      .def_property_readonly("rtol", [](const TensorReport& t) { return t.tolerance.rtol; })
      .def_property_readonly("atol", [](const TensorReport& t) { return t.tolerance.atol; })
      .def_readonly("max_abs_bound", &TensorReport::max_abs_bound)
      .def_readonly("nmse_bound", &TensorReport::nmse_bound)
      .def_readonly("note", &TensorReport::note)
      .def("__repr__", [](const TensorReport& t) {
        return "<moeref.TensorReport " + t.name + ": " + golden::status_name(t.status) + ">";
      });

  py::class_<CompareReport>(module, "CompareReport",
                            "the checker's report: the verdict, the first failing tensor and "
                            "every tensor's statistics, as `moeref compare` prints them")
      .def_readonly("set", &CompareReport::set)
      .def_property_readonly(
          "precision", [](const CompareReport& r) { return golden::precision_name(r.precision); })
      .def_readonly("passed", &CompareReport::passed)
      .def_property_readonly("verdict",
                             [](const CompareReport& r) { return r.passed ? "PASS" : "FAIL"; })
      .def_readonly("first_failure", &CompareReport::first_failure)
      .def_readonly("anchored", &CompareReport::anchored)
      .def_readonly("compared", &CompareReport::compared)
      .def_readonly("extra", &CompareReport::extra)
      .def_readonly("tensors", &CompareReport::tensors)
      .def(
          "tensor",
          [](const CompareReport& r, const std::string& name) {
            for (const TensorReport& t : r.tensors) {
              if (t.name == name) return t;
            }
            throw py::key_error("the report has no tensor '" + name + "'");
          },
          arg("name"))
      .def("to_text", &CompareReport::to_text, arg("all_tensors") = false)
      .def("to_json", [](const CompareReport& r) { return python_from_json(r.to_json()); })
      .def("__bool__", [](const CompareReport& r) { return r.passed; })
      .def("__str__", [](const CompareReport& r) { return r.to_text(); })
      .def("__repr__", [](const CompareReport& r) {
        return std::string("<moeref.CompareReport ") + (r.passed ? "PASS" : "FAIL") +
               (r.first_failure ? ", first failure " + *r.first_failure : std::string()) + ">";
      });

  module.def("compare", &compare, arg("set_or_trace"), arg("candidate"), arg("precision") = "fp32",
             arg("rtol") = py::none(), arg("atol") = py::none(), arg("require_all") = false,
             "check a candidate (a dict of arrays by tensor name) against a golden set, its "
             "directory, or a reference trace (Model.trace) -> CompareReport");
  module.def(
      "run_case",
      [](const GoldenSet& set) {
        golden::Candidate candidate;
        {
          py::gil_scoped_release release;
          candidate = golden::run_case(set, ref_kernels());
        }
        py::dict tensors;
        for (const auto& [name, record] : candidate) {
          tensors[py::str(name)] = array_from_record(record);
        }
        return tensors;
      },
      arg("set"), "the reference's own run of a set, as a candidate (every expected tensor)");
  module.def("op_case_names", &golden::op_case_names, "the committed op cases' names");
  module.def(
      "op_case",
      [](const std::string& name) {
        const golden::OpCase built = golden::build_op_case(name);
        return op_case_dict(built.manifest, built.inputs, built.outputs);
      },
      arg("name"), "an op case built afresh: {'manifest', 'inputs', 'outputs'}");
  module.def("op_case_ops", &golden::shaped_op_names,
             "the ops op_case and write_op_case generate cases for, at any shape");
  module.def(
      "op_case",
      [](const std::string& op, const py::object& shape, int64_t seed, double margin,
         const std::optional<std::string>& resolved_at, const std::string& name, int64_t tries) {
        const golden::OpCaseRequest request =
            op_request(op, shape, seed, margin, resolved_at, name, tries);
        if (!request.resolved_at) {
          golden::OpCase built;
          {
            py::gil_scoped_release release;
            built = golden::build_shaped_op_case(request);
          }
          return op_case_dict(built.manifest, built.inputs, built.outputs);
        }
        // Resolution is judged on the case's calibration, which is measured on a written set.
        const TemporaryDirectory directory;
        {
          py::gil_scoped_release release;
          golden::write_shaped_op_case(request, directory.path());
        }
        const GoldenSet set = GoldenSet::open(directory.path());
        return op_case_dict(set.manifest(), set.inputs().tensors(), set.trace().tensors());
      },
      arg("op"), arg("shape"), arg("seed") = 1234, arg("margin") = 1e-3,
      arg("resolved_at") = py::none(), arg("name") = "", arg("tries") = 1000,
      "an op case at the caller's shapes (docs/golden-format.md), seeds searched from `seed` "
      "until every decision's margin is above `margin` (and resolved at `resolved_at`): "
      "{'manifest', 'inputs', 'outputs'}");
  module.def(
      "write_op_case",
      [](const py::object& dir, const std::string& op, const py::object& shape, int64_t seed,
         double margin, const std::optional<std::string>& resolved_at, const std::string& name,
         int64_t tries) {
        const golden::OpCaseRequest request =
            op_request(op, shape, seed, margin, resolved_at, name, tries);
        const std::filesystem::path path = path_of(dir);
        {
          py::gil_scoped_release release;
          golden::write_shaped_op_case(request, path);
        }
        return GoldenSet::open(path);
      },
      arg("dir"), arg("op"), arg("shape"), arg("seed") = 1234, arg("margin") = 1e-3,
      arg("resolved_at") = py::none(), arg("name") = "", arg("tries") = 1000,
      "write a calibrated golden op set at the caller's shapes, as `moeref golden --op` does "
      "-> GoldenSet");
  module.def(
      "write_model_case",
      [](const py::object& dir, const py::object& config, const std::string& name,
         const std::string& description, const py::object& prompt, int64_t prompt_length,
         int64_t decode_steps, int64_t sampled_tokens, double temperature, int64_t top_k,
         double top_p, uint64_t seed, double margin_threshold,
         const std::optional<std::string>& resolved_at) {
        golden::ModelCaseSpec spec =
            case_spec(config, name, description, prompt, prompt_length, decode_steps,
                      sampled_tokens, temperature, top_k, top_p, seed, margin_threshold);
        spec.resolved_at = resolved_at_of(resolved_at);
        const std::filesystem::path path = path_of(dir);
        {
          py::gil_scoped_release release;
          golden::write_model_case(spec, path);
        }
        return GoldenSet::open(path);
      },
      arg("dir"), arg("config"), arg("name") = "", arg("description") = "",
      arg("prompt") = py::none(), arg("prompt_length") = 12, arg("decode_steps") = 4,
      arg("sampled_tokens") = 8, arg("temperature") = 0.8, arg("top_k") = 0, arg("top_p") = 0.95,
      arg("seed") = 1234, arg("margin_threshold") = 1e-3, arg("resolved_at") = py::none(),
      "write a calibrated golden model set for the caller's config, as `moeref golden` does "
      "(a prompt searched for whose decisions all clear margin_threshold, and with resolved_at "
      "are all resolved at that precision, unless given; a given prompt that fails is refused) "
      "-> GoldenSet");
}

}  // namespace moeref::python
