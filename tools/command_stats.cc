// moeref stats CONFIG [--json]: what a config costs, from its shapes alone; and the kernels the
// simd backend runs on this CPU.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "ref/io/config.h"
#include "ref/model/stats.h"
#include "simd/blas_gemm.h"
#include "simd/cpu_features.h"
#include "simd/tile_gemm.h"
#include "tools/commands.h"

namespace moeref::cli {

namespace {

struct StatsOptions {
  std::string config_path;
  bool json = false;
};

void print_table(const ModelConfig& config, const ModelStats& s) {
  auto billions = [](int64_t n) { return static_cast<double>(n) / 1e9; };
  const double kv_f16_mqa = 2.0 * static_cast<double>(s.kv_values_per_token);
  const double kv_f16_mha = 2.0 * static_cast<double>(s.kv_values_per_token_mha);
  std::printf(
      "config %s: %lld layers, d_model %lld, %lld query heads x %lld, %lld K/V head(s), "
      "%lld experts top-%lld\n",
      config.name.c_str(), static_cast<long long>(config.n_layers),
      static_cast<long long>(config.d_model), static_cast<long long>(config.n_heads),
      static_cast<long long>(config.head_dim), static_cast<long long>(config.n_kv_heads),
      static_cast<long long>(config.n_experts), static_cast<long long>(config.top_k));
  std::printf("  parameters, total           %16lld  (%.3f B)\n",
              static_cast<long long>(s.params_total), billions(s.params_total));
  std::printf("  parameters, active / token  %16lld  (%.3f B)\n",
              static_cast<long long>(s.params_active), billions(s.params_active));
  std::printf("    attention                 %16lld  (%.3f B)\n",
              static_cast<long long>(s.params_attention), billions(s.params_attention));
  std::printf("    one expert, all layers    %16lld  (%.3f B)\n",
              static_cast<long long>(s.params_per_expert), billions(s.params_per_expert));
  std::printf("    embeddings and LM head    %16lld  (%.3f B)\n",
              static_cast<long long>(s.params_embedding), billions(s.params_embedding));
  std::printf("  matmul FLOPs / token        %16lld  (%.1f GFLOP)\n",
              static_cast<long long>(s.matmul_flops_per_token),
              static_cast<double>(s.matmul_flops_per_token) / 1e9);
  std::printf("  attention FLOPs / token / position of context  %lld\n",
              static_cast<long long>(s.attention_flops_per_token_per_position));
  std::printf("  KV cache / token            %s fp32, %s fp16 (multi-head: %s fp16, %.0fx)\n",
              format_bytes(4.0 * static_cast<double>(s.kv_values_per_token)).c_str(),
              format_bytes(kv_f16_mqa).c_str(), format_bytes(kv_f16_mha).c_str(),
              kv_f16_mha / kv_f16_mqa);
  std::printf("  weights in memory           %s fp32\n",
              format_bytes(static_cast<double>(s.weight_bytes_f32)).c_str());
  std::printf("  KV cache at %lld positions  %s fp32\n", static_cast<long long>(config.max_seq_len),
              format_bytes(static_cast<double>(s.kv_cache_bytes_f32)).c_str());
  if (!config.vision) return;
  const VisionConfig& v = *config.vision;
  std::printf("  vision: %lldx%lld image, %lld patches, %lld vision tokens, %zu gated blocks\n",
              static_cast<long long>(v.image_size), static_cast<long long>(v.image_size),
              static_cast<long long>(v.n_patches()), static_cast<long long>(v.n_tokens()),
              v.cross_attention_layers.size());
  std::printf("    tower, resampler, projector %14lld  (%.3f B), once per image\n",
              static_cast<long long>(s.params_vision), billions(s.params_vision));
  std::printf("    gated cross-attention     %16lld  (%.3f B), active but k_proj, v_proj\n",
              static_cast<long long>(s.params_cross_attention), billions(s.params_cross_attention));
  std::printf("    FLOPs / image             %16lld  (%.3f GFLOP)\n",
              static_cast<long long>(s.vision_flops_per_image),
              static_cast<double>(s.vision_flops_per_image) / 1e9);
  std::printf("    cross-attention FLOPs / token  %lld\n",
              static_cast<long long>(s.cross_attention_flops_per_token));
}

// "SkylakeX", or "SkylakeX (OpenBLAS chose Haswell)" where simd/ re-selected its kernels.
std::string blas_kernels_text(const simd::BlasCores& cores) {
  if (cores.in_use == cores.chosen_by_openblas) return cores.in_use;
  return cores.in_use + " (OpenBLAS chose " + cores.chosen_by_openblas + ")";
}

void print_kernels() {
  std::printf("simd kernels on this CPU: OpenBLAS %s, Highway %s, tile token prefetch %s\n",
              blas_kernels_text(simd::blas_cores()).c_str(), simd::highway_target(),
              simd::tile_gemm_prefetches_tokens() ? "on" : "off");
}

nlohmann::json kernels_json() {
  const simd::BlasCores cores = simd::blas_cores();
  return {{"openblas_core", cores.in_use},
          {"openblas_chose", cores.chosen_by_openblas},
          {"highway_target", simd::highway_target()},
          {"tile_token_prefetch", simd::tile_gemm_prefetches_tokens() ? "on" : "off"}};
}

nlohmann::json stats_json(const ModelConfig& config, const ModelStats& s) {
  nlohmann::json out = {
      {"config", config.name},
      {"params_total", s.params_total},
      {"params_active_per_token", s.params_active},
      {"params_attention", s.params_attention},
      {"params_per_expert", s.params_per_expert},
      {"params_embedding", s.params_embedding},
      {"matmul_flops_per_token", s.matmul_flops_per_token},
      {"attention_flops_per_token_per_position", s.attention_flops_per_token_per_position},
      {"kv_cache_bytes_per_token_f32", 4 * s.kv_values_per_token},
      {"kv_cache_bytes_per_token_f32_multi_head", 4 * s.kv_values_per_token_mha},
      {"weight_bytes_f32", s.weight_bytes_f32},
      {"kv_cache_bytes_f32_max_seq_len", s.kv_cache_bytes_f32},
  };
  if (config.vision) {
    out["vision"] = {{"params", s.params_vision},
                     {"params_cross_attention", s.params_cross_attention},
                     {"flops_per_image", s.vision_flops_per_image},
                     {"cross_attention_flops_per_token", s.cross_attention_flops_per_token},
                     {"vision_tokens_per_image", config.vision->n_tokens()}};
  }
  out["simd_kernels"] = kernels_json();
  return out;
}

}  // namespace

Command register_stats(CLI::App& app) {
  auto options = std::make_shared<StatsOptions>();
  CLI::App* command = app.add_subcommand(
      "stats", "Parameters, FLOPs, KV-cache and memory of a config (allocates nothing)");
  command->add_option("config", options->config_path, "Model config (JSON)")->required();
  command->add_flag("--json", options->json, "Print JSON");
  return {command, [options] {
            const ModelConfig config = load_config(options->config_path);
            const ModelStats stats = compute_stats(config);
            if (options->json) {
              std::cout << stats_json(config, stats).dump(2) << "\n";
            } else {
              print_table(config, stats);
              print_kernels();
            }
            return 0;
          }};
}

}  // namespace moeref::cli
