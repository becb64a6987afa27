#include "model/model_info.h"

#include <cstdio>
#include <sstream>

namespace lumen {
namespace {

std::string human_count(int64_t n) {
  char buf[32];
  if (n >= 1'000'000'000) std::snprintf(buf, sizeof buf, "%.2fB", n / 1e9);
  else if (n >= 1'000'000) std::snprintf(buf, sizeof buf, "%.1fM", n / 1e6);
  else if (n >= 1'000) std::snprintf(buf, sizeof buf, "%.1fk", n / 1e3);
  else std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(n));
  return buf;
}

// The few config fields that say what a component is.
nlohmann::json summary_fields(const std::string& name, const nlohmann::json& c) {
  static const std::map<std::string, std::vector<std::string>> fields = {
      {"unet", {"block_out_channels", "layers_per_block", "transformer_layers_per_block", "attention_head_dim",
                "cross_attention_dim", "use_linear_projection", "upcast_attention", "addition_embed_type"}},
      {"vae", {"block_out_channels", "latent_channels", "scaling_factor"}},
      {"text_encoder", {"hidden_size", "num_hidden_layers", "num_attention_heads", "hidden_act", "projection_dim"}},
      {"text_encoder_2", {"hidden_size", "num_hidden_layers", "num_attention_heads", "hidden_act", "projection_dim"}},
  };
  nlohmann::json out = nlohmann::json::object();
  auto it = fields.find(name);
  if (it == fields.end()) return out;
  for (const auto& f : it->second)
    if (c.contains(f) && !c[f].is_null()) out[f] = c[f];
  return out;
}

}  // namespace

nlohmann::json plan_to_json(const ModelPlan& plan) {
  nlohmann::json j;
  j["path"] = plan.path;
  j["format"] = plan.format;
  j["family"] = family_name(plan.family);
  j["prediction_type"] = plan.prediction_type.empty() ? nlohmann::json() : nlohmann::json(plan.prediction_type);
  j["zero_terminal_snr"] = plan.zero_terminal_snr;
  int64_t total = 0;
  for (const auto& [name, c] : plan.components) {
    j["components"][name] = {{"parameters", c.parameters},
                             {"dtypes", c.dtype_tensors},
                             {"config_source", c.config_source},
                             {"config", summary_fields(name, c.config)}};
    total += c.parameters;
  }
  j["parameters"] = total;
  for (const auto& [name, t] : plan.tokenizers) j["tokenizers"][name] = {{"vocab", t.vocab}, {"pad_token", t.pad_token}};
  j["notes"] = plan.notes;
  return j;
}

std::string plan_to_text(const ModelPlan& plan) {
  std::ostringstream out;
  out << "model:        " << plan.path << "\n"
      << "format:       " << plan.format << "\n"
      << "architecture: " << family_name(plan.family) << "\n"
      << "prediction:   " << (plan.prediction_type.empty() ? "not stated by the files" : plan.prediction_type)
      << (plan.zero_terminal_snr ? " (zero terminal SNR)" : "") << "\n";
  int64_t total = 0;
  out << "components:\n";
  for (const auto& [name, c] : plan.components) {
    out << "  " << name << ": " << human_count(c.parameters) << " parameters, dtypes";
    for (const auto& [dtype, count] : c.dtype_tensors) out << " " << dtype << "×" << count;
    out << "\n    " << summary_fields(name, c.config).dump() << "\n";
    total += c.parameters;
  }
  out << "  total: " << human_count(total) << " parameters\n";
  for (const auto& [name, t] : plan.tokenizers)
    out << name << ": " << t.vocab << " (pad '" << t.pad_token << "')\n";
  if (!plan.notes.empty()) {
    out << "notes (guessed or not understood):\n";
    for (const auto& n : plan.notes) out << "  - " << n << "\n";
  }
  return out.str();
}

}  // namespace lumen
