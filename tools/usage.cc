#include "tools/usage.h"

#include <charconv>
#include <string>
#include <vector>

#include "golden/compare.h"

namespace moeref::cli {

CLI::Validator at_least(int64_t least) {
  return CLI::Validator(
      [least](std::string& input) -> std::string {
        int64_t value = 0;
        const char* end = input.data() + input.size();
        const auto [stop, error] = std::from_chars(input.data(), end, value);
        if (error == std::errc() && stop == end && value >= least) return "";
        return input + " is not an integer of at least " + std::to_string(least);
      },
      "INT>=" + std::to_string(least));
}

CLI::Validator precision_name() {
  std::vector<std::string> names;
  for (const golden::Precision p : {golden::Precision::kFP32, golden::Precision::kTF32,
                                    golden::Precision::kBF16, golden::Precision::kFP16}) {
    names.emplace_back(golden::precision_name(p));
  }
  return CLI::IsMember(names);
}

}  // namespace moeref::cli
