// File and directory arguments from Python: a str or any os.PathLike (pathlib.Path, ...).
#pragma once

#include <pybind11/pybind11.h>

#include <filesystem>

namespace moeref::python {

// Whether `value` is a str or an os.PathLike.
bool is_path(const pybind11::object& value);

// os.fspath(value) as a path; raises TypeError (from os.fspath) for anything else.
std::filesystem::path path_of(const pybind11::object& value);

}  // namespace moeref::python
