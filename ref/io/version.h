// moeref's version and the git commit it was built from ("unknown" outside a checkout).
#pragma once

namespace moeref {

const char* version();
const char* git_commit();

}  // namespace moeref
