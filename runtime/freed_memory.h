// retain_freed_memory: asks the C library's malloc to keep freed memory for reuse instead of
// giving it back to the kernel, a process-wide setting for programs that call the model in a loop.
//
// Why: every forward call allocates its activations (ref/model/decoder_layer.cc,
// ref/model/moe.cc) and frees them on return. glibc hands blocks of 128 KiB and more to the kernel
// on free, and trims the top of its heaps past 128 KiB; the next call then takes a page fault on
// every 4 KiB it touches again. On the machine of docs/performance.md a 512-token prefill of
// configs/small.json took about 20,000 page faults in all, a quarter of its time: 16,000 to touch
// the [512, 32000] logits again (62.5 MiB of 4 KiB pages; runtime/huge_pages.h's part), the rest
// for the activations. With this setting and huge pages, about 10.
//
// What: glibc's M_MMAP_THRESHOLD at 4 MiB (blocks up to that size, every activation of a
// small-config layer, come from the heap, where they are reused) and M_TRIM_THRESHOLD at 32 MiB
// (free memory at a heap's top stays mapped up to that size). Larger arrays are mostly Tensors,
// whose memory resource keeps its own when a program opts into it (runtime/huge_pages.h). Higher
// thresholds kept more: 32 and 256 MiB raised the benchmark's peak resident memory from 1.11
// to 1.16 times weights + KV cache, as memory freed by one phase (a reference prefill) stayed
// resident beside the next's. Nothing else changes: where memory lives, never what it holds. A
// no-op outside glibc.
//
// Nothing in ref/, simd/ or golden/ calls it: tools/moeref.cc and the benchmarks call it first
// thing; a program that embeds moeref may.
#pragma once

namespace moeref::runtime {

void retain_freed_memory();

}  // namespace moeref::runtime
