// The catalog's bugs in the weights a backend loads (golden/bug_catalog.h): a matrix read in the
// wrong layout or from the wrong tensor, two experts loaded into each other's slots, a gate
// stored for a formula without its tanh. Each mutates the weights of every model the set runs and
// changes nothing else (golden/mutated_runner.h); op cases, whose operands are inputs, are out of
// their reach.
#pragma once

#include <vector>

#include "golden/bug_catalog.h"

namespace moeref::golden {

std::vector<Bug> weight_bugs();

}  // namespace moeref::golden
