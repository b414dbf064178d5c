#include "ref/ops/residual.h"

namespace moeref::ref {

void residual_add(float* x, const float* branch, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += branch[i];
}

}  // namespace moeref::ref
