#include "ref/io/json_text.h"

#include <string>
#include <vector>

namespace moeref {

namespace {

using nlohmann::json;

// nlohmann's what() without its "[json.exception.parse_error.101] " tag.
std::string without_tag(const std::string& what) {
  const size_t tag_end = what.find("] ");
  return tag_end == std::string::npos ? what : what.substr(tag_end + 2);
}

// The number as written, from "number overflow parsing '1e999'".
std::string overflowing_number(const std::string& what) {
  const std::string marker = "parsing '";
  const size_t begin = what.find(marker);
  const size_t end = what.rfind('\'');
  if (begin == std::string::npos || end <= begin + marker.size()) return without_tag(what);
  return what.substr(begin + marker.size(), end - begin - marker.size());
}

std::string key_path(const std::vector<std::string>& open_object_keys) {
  std::string path;
  for (const std::string& key : open_object_keys) {
    if (key.empty()) continue;
    if (!path.empty()) path += '.';
    path += key;
  }
  return path;
}

}  // namespace

json parse_json_text(std::string_view text, const json::parser_callback_t& callback) {
  // The current key of every open object, "" before its first key.
  std::vector<std::string> open_object_keys;
  const json::parser_callback_t track_keys = [&](int depth, json::parse_event_t event,
                                                 json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_object_keys.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_object_keys.pop_back();
    } else if (event == json::parse_event_t::key) {
      open_object_keys.back() = parsed.get<std::string>();
    }
    return callback ? callback(depth, event, parsed) : true;
  };
  try {
    return json::parse(text, track_keys);
  } catch (const json::parse_error& e) {
    throw JsonTextError("malformed JSON: " + without_tag(e.what()));
  } catch (const json::out_of_range& e) {
    // The parser throws out_of_range for one thing only: a number past the largest double.
    const std::string path = key_path(open_object_keys);
    throw JsonTextError((path.empty() ? "" : "key \"" + path + "\": ") + "number " +
                        overflowing_number(e.what()) + " is out of the range of a double");
  }
}

}  // namespace moeref
