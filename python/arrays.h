// The Python module's array contract (docs/python.md, "Arrays and errors").
//
// Float operands are numpy.ndarray of float32 in native byte order, C-contiguous, of the shape
// the op's header states; they are read in place, never copied or converted. Anything else
// raises before the op runs, naming the argument: TypeError for an object that is not an
// ndarray or has another dtype, ValueError for a wrong ndim or shape or a non-contiguous array
// (numpy.ascontiguousarray makes one). Integer operands (tokens, positions, expert indices) are
// any ndarray or sequence of integers that fits int32 or int64, converted since they are small.
// Results are new float32 or int32 ndarrays that the op writes directly.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ref/io/safetensors.h"
#include "ref/tensor.h"

namespace moeref::python {

namespace py = pybind11;

using FloatArray = py::array_t<float, py::array::c_style>;
using Int32Array = py::array_t<int32_t, py::array::c_style>;

// A dimension the caller may choose; every other entry of an expected shape must match.
constexpr int64_t kAnySize = -1;

// The float32 operand `argument` with ndim expected.size(), each dimension equal to the expected
// one where that is not kAnySize. Raises as the contract above says.
FloatArray float_operand(const py::handle& value, const std::string& argument,
                         const std::vector<int64_t>& expected);
// The same for an elementwise op's operand, of any shape.
FloatArray float_operand_any_shape(const py::handle& value, const std::string& argument);
// The same contract for an int32 operand that comes from another op (expert indices from top_k).
Int32Array int32_array_operand(const py::handle& value, const std::string& argument,
                               const std::vector<int64_t>& expected);

// An integer operand of ndim 1 (any length), as int64 or int32. Raises TypeError for a value that
// is not a sequence or array of integers and ValueError for another ndim or a value that does not
// fit.
std::vector<int64_t> int64_operand(const py::handle& value, const std::string& argument);
std::vector<int32_t> int32_operand(const py::handle& value, const std::string& argument);

// Dimension `axis` of a checked operand.
inline int64_t dim(const FloatArray& array, py::ssize_t axis) { return array.shape(axis); }

// Raises ValueError naming `argument` unless `value` >= minimum.
void require_at_least(int64_t value, int64_t minimum, const std::string& argument);

FloatArray new_float_array(const std::vector<int64_t>& shape);
Int32Array new_int32_array(const std::vector<int64_t>& shape);

// A copy of a tensor or record as an ndarray (float32, float16, float64, int32 or int64; bf16
// records come back as float32, which holds them exactly).
py::array array_from_tensor(const Tensor& tensor);
py::array array_from_record(const TensorRecord& record);
// Records by name, in their order (dicts keep insertion order).
py::dict dict_from_records(const std::vector<TensorRecord>& records);

// A record of the ndarray `value` (float32, float16, float64, int32 or int64, C-contiguous), for
// the checker; `argument` names it in errors.
TensorRecord record_from_array(const std::string& name, const py::handle& value,
                               const std::string& argument);
// A float32 tensor from an operand checked as float_operand does.
Tensor tensor_from_operand(const py::handle& value, const std::string& argument,
                           const std::vector<int64_t>& expected);

// JSON to and from Python objects (dicts, lists, numbers, strings, booleans, None), through the
// standard json module. A value json cannot represent raises TypeError naming `argument`.
nlohmann::json json_from_python(const py::handle& value, const std::string& argument);
py::object python_from_json(const nlohmann::json& value);

}  // namespace moeref::python
