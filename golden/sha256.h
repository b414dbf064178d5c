// SHA-256 digests (OpenSSL's libcrypto), as lowercase hex: what golden manifests record for every
// file and tensor, so a corrupted or hand-edited set is caught before it is trusted.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string>

namespace moeref::golden {

std::string sha256_hex(std::span<const std::byte> bytes);
// Throws std::runtime_error naming the file if it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace moeref::golden
