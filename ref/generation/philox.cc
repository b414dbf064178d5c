#include "ref/generation/philox.h"

namespace moeref {

namespace {

constexpr uint32_t kMultiplier0 = 0xD2511F53;
constexpr uint32_t kMultiplier1 = 0xCD9E8D57;
constexpr uint32_t kWeyl0 = 0x9E3779B9;  // golden ratio
constexpr uint32_t kWeyl1 = 0xBB67AE85;  // sqrt(3) - 1

struct HiLo {
  uint32_t hi;
  uint32_t lo;
};

HiLo mulhilo32(uint32_t a, uint32_t b) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  return {static_cast<uint32_t>(product >> 32), static_cast<uint32_t>(product)};
}

PhiloxCounter round(const PhiloxCounter& c, const PhiloxKey& k) {
  const HiLo p0 = mulhilo32(kMultiplier0, c[0]);
  const HiLo p1 = mulhilo32(kMultiplier1, c[2]);
  return {p1.hi ^ c[1] ^ k[0], p1.lo, p0.hi ^ c[3] ^ k[1], p0.lo};
}

}  // namespace

PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      key[0] += kWeyl0;
      key[1] += kWeyl1;
    }
    counter = round(counter, key);
  }
  return counter;
}

PhiloxKey philox_key_from_seed(uint64_t seed) {
  return {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
}

float generation_uniform(uint64_t seed, uint32_t draw, uint32_t position, uint32_t request,
                         RandomStream stream) {
  const PhiloxCounter bits = philox4x32_10({draw, position, request, static_cast<uint32_t>(stream)},
                                           philox_key_from_seed(seed));
  return uniform_from_bits(bits[0]);
}

uint32_t fnv1a32(std::string_view text) {
  uint32_t hash = 0x811C9DC5;
  for (const char ch : text) {
    hash ^= static_cast<unsigned char>(ch);
    hash *= 0x01000193;
  }
  return hash;
}

}  // namespace moeref
