// The catalog's bugs in the steps around the model (golden/bug_catalog.h), run through
// golden/mutated_runner.h: how a token is picked from the logits (the row, the argmax's ties,
// top-p's boundary, the temperature, the Philox counter), which tokens see the image, which
// distribution a rejected speculative token is drawn from, and what a serving engine does with a
// preempted sequence's positions and blocks.
#pragma once

#include <vector>

#include "golden/bug_catalog.h"

namespace moeref::golden {

std::vector<Bug> run_bugs();

}  // namespace moeref::golden
