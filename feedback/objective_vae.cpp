// AutoencoderKL training: L1 (+ optional MSE) reconstruction of a posterior
// sample, plus a KL term towards N(0, I) per latent element.
#include <filesystem>

#include "error.h"
#include "image_grid.h"
#include "io/atomic_file.h"
#include "io/safetensors_torch.h"
#include "model/configs.h"
#include "model/model_loader.h"
#include "nn/init.h"
#include "nn/vae.h"
#include "objective_parts.h"
#include "pipeline/memory_estimate.h"
#include "shapes/judge.h"
#include "shapes/shapes_world.h"

namespace lumen::train {
namespace {

bool is_decoder(const std::string& name) {
  return name.rfind("decoder.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0;
}

class VaeObjective : public Objective {
 public:
  VaeObjective(const Recipe& recipe, const Dataset& dataset) : recipe_(recipe), dataset_(dataset) {
    if (!recipe.vae_init.empty()) {
      const std::string file = recipe.vae_init + "/config.json";
      if (!std::filesystem::exists(file)) throw Error(recipe.vae_init, "vae.init must be a VAE folder with config.json");
      config_ = read_yaml_or_json(file);
      vae_ = build_vae(config_, file, *open_component_weights({recipe.vae_init + "/diffusion_pytorch_model.safetensors"}));
    } else {
      config_ = recipe.vae_config;
      config_["_class_name"] = "AutoencoderKL";
      if (!config_.contains("sample_size")) config_["sample_size"] = recipe.dataset.width;
      vae_ = nn::AutoencoderKL(parse_vae_config(config_, recipe.file + ": vae.config"));
      nn::init_for_training(*vae_, recipe.seed);
    }
    check_training_fits(estimate_vae_training_bytes(vae_->config, recipe.dataset.width, recipe.dataset.height,
                                                    recipe.batch_size),
                        recipe.dataset.width, recipe.dataset.height, recipe.batch_size, recipe.file);
    if (recipe.vae_decoder_only)
      for (auto& [name, p] : named_parameters(*vae_))
        if (!is_decoder(name)) p.set_requires_grad(false);
    // A fixed batch to show reconstructions of, the same at every sample point.
    preview_ = dataset.batch(recipe.seed ^ 0x9e37, 0, 8).images;
  }

  NamedTensors trainable() override {
    NamedTensors out;
    for (auto& item : named_parameters(*vae_))
      if (!recipe_.vae_decoder_only || is_decoder(item.first)) out.push_back(item);
    return out;
  }

  torch::Tensor loss(const Batch& batch, at::Generator& gen, Metrics& metrics) override {
    const auto dist = nn::split_moments(vae_->encode_moments(batch.images));
    const auto z = dist.mean + dist.std * torch::randn(dist.mean.sizes(), gen, dist.mean.options());
    const auto rec = vae_->decode(z);
    const auto l1 = (rec - batch.images).abs().mean();
    const auto kl = 0.5 * (dist.mean.pow(2) + dist.logvar.exp() - 1 - dist.logvar).mean();
    auto total = l1 + recipe_.kl_weight * kl;
    if (recipe_.mse_weight > 0) total = total + recipe_.mse_weight * (rec - batch.images).pow(2).mean();
    metrics["l1"] = l1.item<double>();
    metrics["kl"] = kl.item<double>();
    return total;
  }

  void sample(const std::string& png, Metrics& metrics) override {
    torch::NoGradGuard no_grad;
    const auto rec = vae_->decode(nn::split_moments(vae_->encode_moments(preview_)).mean).clamp(-1, 1);
    metrics["psnr"] = psnr(rec, preview_);
    write_png(png, make_grid(torch::cat({preview_, rec}), preview_.size(0)), {}, true);
    if (recipe_.dataset.type == "shapes") judge_reconstructions(metrics);
  }

  // The judge on reconstructions of the 108 evaluation captions: how much of
  // the contract the VAE alone can keep (an upper bound for the whole model).
  void judge_reconstructions(Metrics& metrics) {
    const auto captions = shapes::split_captions(shapes::Split::eval);
    std::vector<torch::Tensor> images;
    for (const auto& c : captions)
      images.push_back(image_tensor(shapes::render(c, static_cast<int>(recipe_.dataset.width),
                                                   static_cast<int>(recipe_.dataset.height))));
    const auto x = torch::stack(images);
    const auto rec = vae_->decode(nn::split_moments(vae_->encode_moments(x)).mean).clamp(-1, 1);
    std::vector<shapes::Judgement> judgements;
    for (size_t i = 0; i < captions.size(); ++i)
      judgements.push_back(shapes::judge(to_rgb(rec[static_cast<int64_t>(i)]), captions[i]));
    const auto summary = shapes::summarize(judgements);
    metrics["recon_correct"] = summary.all.correct;
    double bg = 0;
    for (const auto& j : judgements) bg += std::isfinite(j.bg_error) ? j.bg_error : 255;  // no background left: worst
    metrics["recon_bg_error"] = bg / static_cast<double>(judgements.size());
  }

  void write_final(const std::string& folder) override {
    torch::NoGradGuard no_grad;
    // As SD's VAE: scale latents to unit variance for the diffusion model
    // (measured on 256 training images).
    auto latents = nn::split_moments(vae_->encode_moments(dataset_.batch(recipe_.seed ^ 0x5ca1e, 0, 256).images)).mean;
    json config = config_;
    // A decoder-only run keeps the encoder, its latents and so their scale:
    // a diffusion model trained on them stays valid.
    if (!recipe_.vae_decoder_only) config["scaling_factor"] = 1.0 / latents.std().item<double>();
    const std::string dir = folder + "/vae";
    std::filesystem::create_directories(dir);
    std::map<std::string, torch::Tensor> tensors;
    for (const auto& [key, t] : named_parameters(*vae_)) tensors[key] = t.detach();
    save_safetensors(dir + "/diffusion_pytorch_model.safetensors", tensors);
    write_text_atomically(dir + "/config.json", config.dump(2));
  }

 private:
  using json = nlohmann::json;
  const Recipe& recipe_;
  const Dataset& dataset_;
  json config_;
  nn::AutoencoderKL vae_{nullptr};
  torch::Tensor preview_;
};

}  // namespace

std::unique_ptr<Objective> make_vae_objective(const Recipe& recipe, const Dataset& dataset) {
  return std::make_unique<VaeObjective>(recipe, dataset);
}

}  // namespace lumen::train
