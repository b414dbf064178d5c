// Writing files so that readers never see half of one.
//
// The contents go to a temporary file beside the target (same directory, so the rename stays on
// one file system), which is flushed, closed and then renamed over the target. Any failure throws
// std::runtime_error naming the target and the reason, and removes the temporary.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string_view>

namespace moeref {

// ".<name>.<tag>.<pid>" beside target: hidden, and unique to this process.
std::filesystem::path temporary_sibling(const std::filesystem::path& target, std::string_view tag);

// `write` fills the stream; if it throws, the target is left untouched.
void write_file_atomically(const std::filesystem::path& target,
                           const std::function<void(std::ostream&)>& write);

void write_file_atomically(const std::filesystem::path& target, std::string_view contents);

}  // namespace moeref
