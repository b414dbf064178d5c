#include "tests/fuzz/fuzz_support.h"

#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

namespace moeref::fuzz {

namespace fs = std::filesystem;

namespace {

// Removed with everything in it when the process exits normally.
class ScratchDirectory {
 public:
  ScratchDirectory()
      : path_(fs::temp_directory_path() / ("moeref_fuzz." + std::to_string(getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDirectory() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

}  // namespace

const fs::path& scratch_directory() {
  static const ScratchDirectory directory;
  return directory.path();
}

fs::path scratch_file(const std::string& name, const uint8_t* data, size_t size) {
  const fs::path path = scratch_directory() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) throw std::runtime_error(path.string() + ": cannot write the fuzz input");
  return path;
}

fs::path source_path(const std::string& relative) { return fs::path(MOEREF_SOURCE_DIR) / relative; }

}  // namespace moeref::fuzz
