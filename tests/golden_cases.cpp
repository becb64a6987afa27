#include "golden_cases.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "error.h"
#include "io/safetensors_torch.h"
#include "model/model_loader.h"
#include "tokenizer/clip_tokenizer.h"

namespace lumen::golden {
namespace {

using nlohmann::json;

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path, "cannot open");
  return json::parse(in);
}

std::string weights_path(const Case& c, const std::string& component = "") {
  const json& w = c.spec.at("weights");
  return c.path(w.is_string() ? w.get<std::string>() : w.at(component).get<std::string>());
}

const json& config_of(const Case& c, const std::string& component = "") {
  return component.empty() ? c.spec.at("config") : c.spec.at("config").at(component);
}

// ---- networks, shared by the per-network kinds and checkpoint_convert -------

void check_text_encoder(nn::ClipTextModel& te, const Case& c, const std::string& ids_key, const std::string& prefix,
                        Result* r) {
  auto out = te->forward(c.io.at(ids_key));
  auto cmp = [&](const std::string& name, const torch::Tensor& actual) {
    if (c.has(prefix + name)) r->compare(prefix + name, actual, c.io.at(prefix + name), c.atol, c.rtol);
  };
  cmp("last_hidden_state", out.last_hidden_state);
  cmp("penultimate_hidden_state", out.skipped(2));
  cmp("pooler_output", out.pooled);
  if (out.text_embeds.defined()) cmp("text_embeds", out.text_embeds);
  for (size_t i = 0; i < out.hidden_states.size(); ++i) cmp("hidden_states_" + std::to_string(i), out.hidden_states[i]);
}

void check_unet(nn::UNet2DCondition& unet, const Case& c, const std::string& expected_key, Result* r) {
  nn::AddedConditions added;
  if (c.has("input_text_embeds")) added = {c.io.at("input_text_embeds"), c.io.at("input_time_ids")};
  auto out = unet->forward(c.input("sample"), c.input("timestep"), c.input("encoder_hidden_states"), added);
  r->compare(expected_key, out, c.io.at(expected_key), c.atol, c.rtol);
}

void check_vae(nn::AutoencoderKL& vae, const Case& c, const std::string& decoded_key, Result* r) {
  if (c.has("input_image")) {
    auto moments = vae->encode_moments(c.input("image"));
    auto dist = nn::split_moments(moments);
    r->compare("output_moments", moments, c.io.at("output_moments"), c.atol, c.rtol);
    r->compare("output_mean", dist.mean, c.io.at("output_mean"), c.atol, c.rtol);
    r->compare("output_logvar", dist.logvar, c.io.at("output_logvar"), c.atol, c.rtol);
    r->compare("output_std", dist.std, c.io.at("output_std"), c.atol, c.rtol);
  }
  r->compare(decoded_key, vae->decode(c.input("latent")), c.io.at(decoded_key), c.atol, c.rtol);
}

template <typename Build>
auto build_from_file(const Case& c, const std::string& component, Build build) {
  auto weights = open_component_weights({weights_path(c, component)});
  return build(config_of(c, component), c.path("case.json"), *weights, torch::kFloat);
}

// ---- kinds --------------------------------------------------------------------

Result run_tokenizer(const Case& c) {
  const json& files = config_of(c).at("files");
  auto tok = ClipTokenizer::from_files(c.path(files.at("vocab")), c.path(files.at("merges")));
  // tokenizer_2 (SD2 / SDXL) pads with "!", which transformers also matches as a special token.
  const std::string pad2 = config_of(c).at("tokenizer_2").at("pad_token").get<std::string>();
  auto tok2 = tok;
  const int64_t pad_eos = tok.token_to_id(config_of(c).at("tokenizer").at("pad_token").get<std::string>()).value();
  const int64_t pad_zero = tok.token_to_id(pad2).value();
  if (pad_zero != tok.eos_id()) tok2.add_special_token(pad2);
  const int max_len = c.spec.at("params").value("max_length", 77);
  json prompts = read_json(c.path(c.spec.at("data").get<std::string>())).at("prompts");
  auto rows = [&](const std::string& key) { return c.io.at(key); };
  Result r;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string prompt = prompts[i].at("prompt");
    auto ids_tensor = [](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong); };
    const std::string label = "prompt " + std::to_string(i) + " " + json(prompt).dump();
    r.compare(label + " ids", ids_tensor(tok.encode(prompt)),
              ids_tensor(prompts[i].at("ids").get<std::vector<int64_t>>()), 0, 0);
    r.compare(label + " pad_eos", ids_tensor(tok.encode_padded(prompt, max_len, pad_eos)),
              rows("output_ids_max77_pad_eos")[i], 0, 0);
    r.compare(label + " pad_zero", ids_tensor(tok2.encode_padded(prompt, max_len, pad_zero)),
              rows("output_ids_max77_pad_zero")[i], 0, 0);
    if (c.has("output_ids_max77_pad_eos_noftfy"))
      r.compare(label + " noftfy", ids_tensor(tok.encode_padded(prompt, max_len, pad_eos, TextCleaning::Basic)),
                rows("output_ids_max77_pad_eos_noftfy")[i], 0, 0);
  }
  return r;
}

Result run_clip_text(const Case& c) {
  auto te = build_from_file(c, "", build_text_encoder);
  Result r;
  check_text_encoder(te, c, "input_input_ids", "output_", &r);
  return r;
}

Result run_unet(const Case& c) {
  auto unet = build_from_file(c, "", build_unet);
  Result r;
  check_unet(unet, c, "output_sample", &r);
  return r;
}

Result run_vae(const Case& c) {
  auto vae = build_from_file(c, "", build_vae);
  Result r;
  check_vae(vae, c, "output_decoded", &r);
  return r;
}

// The single file must reproduce its own io and every case that shares its weights.
Result run_checkpoint_convert(const Case& c) {
  LoadOptions options;
  options.config_override_json = json::object();
  for (const char* comp : {"unet", "vae", "text_encoder", "text_encoder_2"})
    if (config_of(c).contains(comp) && !config_of(c)[comp].is_null())
      options.config_override_json[comp] = config_of(c)[comp];
  LoadedModel m = load_model(c.path(c.spec.at("weights").get<std::string>()), options);
  Result r;
  check_unet(m.unet, c, "output_unet_sample", &r);
  check_vae(m.vae, c, "output_vae_decoded", &r);
  check_text_encoder(m.text_encoder, c, "input_input_ids", "output_te_", &r);
  if (m.text_encoder_2) check_text_encoder(m.text_encoder_2, c, "input_input_ids_2", "output_te2_", &r);

  const std::string root = golden_dir();
  json manifest = read_json(root + "/manifest.json");
  const json& same = c.spec.at("params").value("same_weights_as_cases", json::object());
  for (auto it = same.begin(); it != same.end(); ++it) {
    for (const auto& name : it.value()) {
      json entry;
      for (const auto& e : manifest.at("cases"))
        if (e.at("name") == name) entry = e;
      if (entry.is_null()) continue;  // a holdout set may not include it
      Case other = load_case(root, entry);
      Result sub;
      if (it.key() == "unet") check_unet(m.unet, other, "output_sample", &sub);
      else if (it.key() == "vae") check_vae(m.vae, other, "output_decoded", &sub);
      else if (it.key() == "text_encoder") check_text_encoder(m.text_encoder, other, "input_input_ids", "output_", &sub);
      else if (it.key() == "text_encoder_2")
        check_text_encoder(m.text_encoder_2, other, "input_input_ids", "output_", &sub);
      r.max_abs_err = std::max(r.max_abs_err, sub.max_abs_err);
      if (!sub.pass && r.pass) {
        r.pass = false;
        r.detail = other.name + ": " + sub.detail;
      }
    }
  }
  return r;
}

}  // namespace

std::string golden_dir() {
  const char* env = std::getenv("LUMEN_GOLDEN_DIR");
  return env && *env ? env : "../shared/golden";
}

torch::Tensor Case::input(const std::string& n) const {
  auto it = io.find("input_" + n);
  if (it == io.end()) throw Error(dir + "/io.safetensors", "missing input_" + n);
  return it->second;
}

void Result::compare(const std::string& what, const torch::Tensor& actual_in, const torch::Tensor& expected_in,
                     double atol, double rtol, bool nan_equal) {
  if (actual_in.sizes() != expected_in.sizes()) {
    pass = false;
    if (detail.empty()) {
      std::ostringstream s;
      s << what << ": shape " << actual_in.sizes() << " != expected " << expected_in.sizes();
      detail = s.str();
    }
    return;
  }
  auto actual = actual_in.detach().to(torch::kDouble);
  auto expected = expected_in.detach().to(torch::kDouble);
  auto nan_a = actual.isnan(), nan_e = expected.isnan();
  auto diff = (actual - expected).abs();
  auto ok = diff <= atol + rtol * expected.abs();
  if (nan_equal) ok = ok | (nan_a & nan_e);
  auto finite_diff = torch::where(nan_a | nan_e, torch::zeros_like(diff), diff);
  max_abs_err = std::max(max_abs_err, diff.numel() ? finite_diff.max().item<double>() : 0.0);
  if (!ok.all().item<bool>()) {
    pass = false;
    if (detail.empty()) {
      const int64_t first = (~ok).flatten().nonzero()[0].item<int64_t>();
      std::ostringstream s;
      s << what << ": " << (~ok).sum().item<int64_t>() << " of " << ok.numel() << " elements off; first at flat index "
        << first << ": actual " << actual.flatten()[first].item<double>() << " expected "
        << expected.flatten()[first].item<double>();
      detail = s.str();
    }
  }
}

Case load_case(const std::string& root, const json& entry) {
  Case c;
  c.name = entry.at("name");
  c.kind = entry.at("kind");
  c.dir = root + "/" + entry.at("dir").get<std::string>();
  c.spec = read_json(c.path("case.json"));
  c.atol = c.spec.value("atol", 0.0);
  c.rtol = c.spec.value("rtol", 0.0);
  if (c.spec.contains("io")) c.io = load_safetensors(c.path(c.spec.at("io").get<std::string>()));
  return c;
}

bool kind_supported(const std::string& kind) {
  return kind == "tokenizer" || kind == "clip_text" || kind == "unet" || kind == "vae" ||
         kind == "checkpoint_convert";
}

Result run_case(const Case& c) {
  torch::InferenceMode inference;
  if (c.kind == "tokenizer") return run_tokenizer(c);
  if (c.kind == "clip_text") return run_clip_text(c);
  if (c.kind == "unet") return run_unet(c);
  if (c.kind == "vae") return run_vae(c);
  if (c.kind == "checkpoint_convert") return run_checkpoint_convert(c);
  throw Error(c.name, "kind '" + c.kind + "' is not supported");
}

}  // namespace lumen::golden
