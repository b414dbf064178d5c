#include "python/paths.h"

#include <string>

namespace py = pybind11;

namespace moeref::python {

bool is_path(const py::object& value) {
  static const py::object& path_like = *new py::object(py::module_::import("os").attr("PathLike"));
  return py::isinstance<py::str>(value) || py::isinstance(value, path_like);
}

std::filesystem::path path_of(const py::object& value) {
  return py::str(py::module_::import("os").attr("fspath")(value)).cast<std::string>();
}

}  // namespace moeref::python
