// The Python module moeref: the reference ops, the model and the checker of this repository for a
// backend author's own tests (docs/python.md).
//
// Errors: the library's error types become Python exceptions named after them (ConfigError,
// SafetensorsError and GoldenError derive from ValueError, since each says what was wrong with
// what the caller gave); pybind11 maps std::invalid_argument and std::length_error to ValueError,
// std::out_of_range to IndexError and other std::exception to RuntimeError. No input ends the
// interpreter.
#include <pybind11/pybind11.h>

#include "golden/golden_set.h"
#include "python/bindings.h"
#include "ref/io/config.h"
#include "ref/io/image.h"
#include "ref/io/json_text.h"
#include "ref/io/safetensors.h"
#include "ref/io/version.h"

PYBIND11_MODULE(moeref, module) {
  namespace py = pybind11;
  module.doc() =
      "moeref: the C++ reference of a mixture-of-experts transformer, its ops, its model and its "
      "golden-set checker, on numpy arrays (docs/python.md).";
  module.attr("__version__") = moeref::version();
  py::register_exception<moeref::ConfigError>(module, "ConfigError", PyExc_ValueError);
  py::register_exception<moeref::SafetensorsError>(module, "SafetensorsError", PyExc_ValueError);
  py::register_exception<moeref::golden::GoldenError>(module, "GoldenError", PyExc_ValueError);
  py::register_exception<moeref::ImageError>(module, "ImageError", PyExc_ValueError);
  py::register_exception<moeref::JsonTextError>(module, "JsonTextError", PyExc_ValueError);
  moeref::python::bind_ops(module);
  moeref::python::bind_model(module);
  moeref::python::bind_checker(module);
}
