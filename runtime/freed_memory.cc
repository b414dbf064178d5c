#include "runtime/freed_memory.h"

#include <cstdlib>  // defines __GLIBC__ where it applies

#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace moeref::runtime {

void retain_freed_memory() {
#ifdef __GLIBC__
  constexpr int kMmapThreshold = 4 << 20;
  constexpr int kTrimThreshold = 32 << 20;
  mallopt(M_MMAP_THRESHOLD, kMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kTrimThreshold);
#endif
}

}  // namespace moeref::runtime
