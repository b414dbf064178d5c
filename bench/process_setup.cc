// Linked into every benchmark program: it runs as the moeref program does, with freed memory
// kept for reuse (ref/freed_memory.h), set before main so that it covers the weights as well.
#include "ref/freed_memory.h"

namespace {

[[maybe_unused]] const bool kFreedMemoryRetained = (moeref::retain_freed_memory(), true);

}  // namespace
