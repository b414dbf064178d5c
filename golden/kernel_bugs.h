// The catalog's bugs that live in one kernel (golden/bug_catalog.h): each is a BuggyKernels
// (golden/buggy_kernels.h) over the honest base, run through golden/mutated_runner.h with nothing
// else changed: RoPE, the norms, attention, the router's softmax, top-k and capacity, SwiGLU and
// the residual add.
//
// A kernel bug reaches every call of its op. moeref's interface has one attention op, which the
// decoder's self-attention, the gated cross-attention (one query at a time, at the last vision
// position) and the vision tower all call, and one residual add, which also adds the tower's
// biases: a bug in one of them shows wherever the op runs, which is where a backend built on this
// interface would show it.
#pragma once

#include <vector>

#include "golden/bug_catalog.h"

namespace moeref::golden {

std::vector<Bug> kernel_bugs();

}  // namespace moeref::golden
