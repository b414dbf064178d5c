#include "ref/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

namespace moeref {

namespace fs = std::filesystem;

fs::path temporary_sibling(const fs::path& target, std::string_view tag) {
  std::string name = ".";
  name += target.filename().string();
  name += '.';
  name += tag;
  name += '.';
  name += std::to_string(getpid());
  return target.parent_path() / name;
}

void write_file_atomically(const fs::path& target,
                           const std::function<void(std::ostream&)>& write) {
  const fs::path temporary = temporary_sibling(target, "tmp");
  try {
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      if (!out)
        throw std::runtime_error(std::string("cannot open for writing: ") + std::strerror(errno));
      write(out);
      out.flush();
      if (!out) throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
    }
    std::error_code error;
    fs::rename(temporary, target, error);
    if (error) throw std::runtime_error("cannot rename into place: " + error.message());
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw std::runtime_error(target.string() + ": " + e.what());
  }
}

void write_file_atomically(const fs::path& target, std::string_view contents) {
  write_file_atomically(target, [&](std::ostream& out) {
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  });
}

}  // namespace moeref
