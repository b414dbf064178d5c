// The parts of the Python module, each adding its functions and classes to the module
// (docs/python.md lists them).
#pragma once

#include <pybind11/pybind11.h>

namespace moeref::python {

void bind_ops(pybind11::module_& module);      // ops.cc: moeref.ops
void bind_model(pybind11::module_& module);    // model.cc: Model, Engine
void bind_checker(pybind11::module_& module);  // checker.cc: GoldenSet, compare, golden cases

}  // namespace moeref::python
