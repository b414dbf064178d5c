// The array contract of arrays.h: checks that raise naming the argument, and the copies between
// ndarrays and the reference's tensors and records.
#include "python/arrays.h"

#include <bit>
#include <cstring>
#include <limits>
#include <span>

namespace moeref::python {

namespace {

// "list", "numpy.float32", "torch.Tensor": the module too, unless the type is a builtin.
std::string type_name(const py::handle& value) {
  const py::handle type = py::type::handle_of(value);
  const std::string name = py::str(type.attr("__qualname__")).cast<std::string>();
  const std::string module = py::str(type.attr("__module__")).cast<std::string>();
  return module == "builtins" ? name : module + "." + name;
}

std::string shape_text(const py::array& array) {
  std::vector<int64_t> shape(array.shape(), array.shape() + array.ndim());
  return shape_string(shape);
}

std::string expected_text(const std::vector<int64_t>& expected) {
  std::string text = "[";
  for (size_t i = 0; i < expected.size(); ++i) {
    if (i > 0) text += ", ";
    text += expected[i] == kAnySize ? std::string("*") : std::to_string(expected[i]);
  }
  return text + "]";
}

std::string dtype_text(const py::dtype& dtype) {
  return py::str(static_cast<const py::handle&>(dtype)).cast<std::string>();
}

bool native_order(const py::dtype& dtype) { return dtype.byteorder() != '>'; }

std::vector<int64_t> array_shape(const py::array& array) {
  return {array.shape(), array.shape() + array.ndim()};
}

// Raises ValueError unless the array can be read in place as a C-contiguous block.
void require_contiguous(const py::array& array, const std::string& argument) {
  if ((array.flags() & py::array::c_style) == 0) {
    throw py::value_error(argument + " is not C-contiguous (a transposed or sliced view): pass " +
                          "numpy.ascontiguousarray(" + argument + ")");
  }
  if ((array.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) == 0) {
    throw py::value_error(argument + " is not aligned: pass numpy.array(" + argument + ")");
  }
}

template <class T>
py::array copy_to_array(const std::vector<int64_t>& shape, std::span<const std::byte> bytes) {
  py::array_t<T, py::array::c_style> array(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  std::memcpy(array.mutable_data(), bytes.data(), bytes.size());
  return array;
}

// The checks of float_operand for an element type T named `type` (numpy's name); an empty
// `expected` with any_shape accepts every shape.
template <class T>
py::array_t<T, py::array::c_style> typed_operand(const py::handle& value,
                                                 const std::string& argument,
                                                 const std::vector<int64_t>& expected,
                                                 const char* type, bool any_shape) {
  if (!py::isinstance<py::array>(value)) {
    throw py::type_error(argument + " must be a numpy.ndarray of " + type + ", got " +
                         type_name(value));
  }
  const auto array = py::reinterpret_borrow<py::array>(value);
  const py::dtype dtype = array.dtype();
  if (dtype.num() != py::dtype::of<T>().num() || !native_order(dtype)) {
    throw py::type_error(argument + " must have dtype " + type + ", got " + dtype_text(dtype) +
                         " (" + argument + ".astype(numpy." + type + ") converts it)");
  }
  if (any_shape) {
    require_contiguous(array, argument);
    return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(value);
  }
  if (static_cast<size_t>(array.ndim()) != expected.size()) {
    throw py::value_error(argument + " must have " + std::to_string(expected.size()) +
                          " dimensions " + expected_text(expected) + ", got shape " +
                          shape_text(array));
  }
  for (size_t axis = 0; axis < expected.size(); ++axis) {
    if (expected[axis] != kAnySize &&
        array.shape(static_cast<py::ssize_t>(axis)) != expected[axis]) {
      throw py::value_error(argument + " must have shape " + expected_text(expected) + ", got " +
                            shape_text(array));
    }
  }
  require_contiguous(array, argument);
  return py::reinterpret_borrow<py::array_t<T, py::array::c_style>>(value);
}

}  // namespace

FloatArray float_operand(const py::handle& value, const std::string& argument,
                         const std::vector<int64_t>& expected) {
  return typed_operand<float>(value, argument, expected, "float32", false);
}

FloatArray float_operand_any_shape(const py::handle& value, const std::string& argument) {
  return typed_operand<float>(value, argument, {}, "float32", true);
}

Int32Array int32_array_operand(const py::handle& value, const std::string& argument,
                               const std::vector<int64_t>& expected) {
  return typed_operand<int32_t>(value, argument, expected, "int32", false);
}

std::vector<int64_t> int64_operand(const py::handle& value, const std::string& argument) {
  // Kept for the life of the process: a static py::object would be released after the
  // interpreter is gone.
  static const py::object& as_array = *new py::object(py::module_::import("numpy").attr("asarray"));
  py::array array;
  try {
    array = as_array(value);
  } catch (const py::error_already_set&) {
    throw py::type_error(argument + " must be a sequence of integers, got " + type_name(value));
  }
  if (array.ndim() != 1) {
    throw py::value_error(argument + " must be one-dimensional, got shape " + shape_text(array));
  }
  if (array.size() == 0) return {};
  const char kind = array.dtype().kind();
  if (kind != 'i' && kind != 'u') {
    throw py::type_error(argument + " must hold integers, got dtype " + dtype_text(array.dtype()));
  }
  if (kind == 'u' && array.dtype().itemsize() == 8 &&
      py::cast<uint64_t>(array.attr("max")()) >
          static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    throw py::value_error(argument + " holds a value past the int64 range");
  }
  const auto converted =
      py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(array);
  return {converted.data(), converted.data() + converted.size()};
}

std::vector<int32_t> int32_operand(const py::handle& value, const std::string& argument) {
  const std::vector<int64_t> wide = int64_operand(value, argument);
  std::vector<int32_t> narrow(wide.size());
  for (size_t i = 0; i < wide.size(); ++i) {
    if (wide[i] < std::numeric_limits<int32_t>::min() ||
        wide[i] > std::numeric_limits<int32_t>::max()) {
      throw py::value_error(argument + "[" + std::to_string(i) + "] = " + std::to_string(wide[i]) +
                            " does not fit int32");
    }
    narrow[i] = static_cast<int32_t>(wide[i]);
  }
  return narrow;
}

void require_at_least(int64_t value, int64_t minimum, const std::string& argument) {
  if (value < minimum) {
    throw py::value_error(argument + " must be at least " + std::to_string(minimum) + ", got " +
                          std::to_string(value));
  }
}

FloatArray new_float_array(const std::vector<int64_t>& shape) {
  return FloatArray(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

Int32Array new_int32_array(const std::vector<int64_t>& shape) {
  return Int32Array(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

py::array array_from_tensor(const Tensor& tensor) {
  return copy_to_array<float>(tensor.shape(), std::as_bytes(tensor.values()));
}

py::array array_from_record(const TensorRecord& record) {
  switch (record.dtype) {
    case DType::kF32:
      return copy_to_array<float>(record.shape, record.bytes);
    case DType::kI32:
      return copy_to_array<int32_t>(record.shape, record.bytes);
    case DType::kI64:
      return copy_to_array<int64_t>(record.shape, record.bytes);
    case DType::kF64:
      return copy_to_array<double>(record.shape, record.bytes);
    case DType::kF16: {
      py::array array = copy_to_array<uint16_t>(record.shape, record.bytes);
      return array.view("float16");
    }
    case DType::kBF16: {
      FloatArray array = new_float_array(record.shape);
      float* out = array.mutable_data();
      for (int64_t i = 0; i < record.numel(); ++i) {
        uint16_t bits = 0;
        std::memcpy(&bits, record.bytes.data() + 2 * i, 2);
        out[i] = std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
      }
      return array;
    }
    default:
      throw py::value_error("tensor \"" + record.name + "\" has dtype " + dtype_name(record.dtype) +
                            ", which the module does not convert");
  }
}

py::dict dict_from_records(const std::vector<TensorRecord>& records) {
  py::dict tensors;
  for (const TensorRecord& record : records)
    tensors[py::str(record.name)] = array_from_record(record);
  return tensors;
}

TensorRecord record_from_array(const std::string& name, const py::handle& value,
                               const std::string& argument) {
  if (!py::isinstance<py::array>(value)) {
    throw py::type_error(argument + " must be a numpy.ndarray, got " + type_name(value));
  }
  const auto array = py::reinterpret_borrow<py::array>(value);
  const py::dtype dtype = array.dtype();
  TensorRecord record;
  record.name = name;
  const int num = dtype.num();
  if (num == py::dtype::of<float>().num()) {
    record.dtype = DType::kF32;
  } else if (num == py::dtype::of<double>().num()) {
    record.dtype = DType::kF64;
  } else if (num == py::dtype::of<int32_t>().num()) {
    record.dtype = DType::kI32;
  } else if (num == py::dtype::of<int64_t>().num()) {
    record.dtype = DType::kI64;
  } else if (num == py::dtype("float16").num()) {
    record.dtype = DType::kF16;
  } else {
    throw py::type_error(argument + " has dtype " + dtype_text(dtype) +
                         "; the checker takes float32, float16, float64, int32 or int64");
  }
  if (!native_order(dtype)) {
    throw py::type_error(argument + " is not in native byte order");
  }
  require_contiguous(array, argument);
  record.shape = array_shape(array);
  const auto* first = static_cast<const std::byte*>(array.data());
  record.bytes.assign(first, first + array.nbytes());
  return record;
}

Tensor tensor_from_operand(const py::handle& value, const std::string& argument,
                           const std::vector<int64_t>& expected) {
  const FloatArray array = float_operand(value, argument, expected);
  return Tensor(array_shape(array), std::vector<float>(array.data(), array.data() + array.size()));
}

nlohmann::json json_from_python(const py::handle& value, const std::string& argument) {
  static const py::object& dumps = *new py::object(py::module_::import("json").attr("dumps"));
  std::string text;
  try {
    text = py::cast<std::string>(dumps(value, py::arg("allow_nan") = false));
  } catch (py::error_already_set& error) {
    throw py::type_error(argument + " is not representable as JSON: " + error.what());
  }
  return nlohmann::json::parse(text);
}

py::object python_from_json(const nlohmann::json& value) {
  static const py::object& loads = *new py::object(py::module_::import("json").attr("loads"));
  return loads(value.dump());
}

}  // namespace moeref::python
