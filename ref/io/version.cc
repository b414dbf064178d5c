#include "ref/io/version.h"

namespace moeref {

const char* version() { return MOEREF_VERSION; }
const char* git_commit() { return MOEREF_GIT_COMMIT; }

}  // namespace moeref
