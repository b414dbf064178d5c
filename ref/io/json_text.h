// JSON text from outside (configs, manifests, request lines), parsed with errors a user can act
// on.
//
// nlohmann reports a malformed document as a parse_error that gives the line and column, but a
// number too large for a double (1e999, -1e400) as an out_of_range error that says neither where
// the number is nor under which key. parse_json_text throws JsonTextError for both, with messages
//   malformed JSON: parse error at line 3, column 7: syntax error ...
//   key "vision.mean": number 1e999 is out of the range of a double
// where the key is the path of object keys down to the number ("vision.mean" also for an element
// of the array under "mean"); the caller prefixes the file (and line). An exception thrown by
// `callback` passes through unchanged.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string_view>

namespace moeref {

class JsonTextError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

nlohmann::json parse_json_text(std::string_view text,
                               const nlohmann::json::parser_callback_t& callback = nullptr);

}  // namespace moeref
