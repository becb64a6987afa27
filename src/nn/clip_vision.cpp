#include "nn/clip_vision.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include "error.h"
#include "runtime.h"
#include "io/text_file.h"
#include "model/weights.h"

namespace lumen::nn {

ClipVisionModelImpl::ClipVisionModelImpl(const ClipVisionConfig& c) : config(c) {
  const int64_t d = c.hidden_size;
  auto vision_model = register_module("vision_model", std::make_shared<torch::nn::Module>());
  auto embeddings = vision_model->register_module("embeddings", std::make_shared<torch::nn::Module>());
  class_embedding = embeddings->register_parameter("class_embedding", torch::empty({d}));
  patch_embedding = embeddings->register_module(
      "patch_embedding", Conv2d(c.num_channels, d, c.patch_size, c.patch_size, 0, /*bias=*/false));
  position_embedding = embeddings->register_module("position_embedding", Embedding(c.num_patches() + 1, d));
  pre_layrnorm = vision_model->register_module("pre_layrnorm", LayerNorm(d, c.layer_norm_eps));
  auto encoder = vision_model->register_module("encoder", std::make_shared<torch::nn::Module>());
  auto list = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers.push_back(ClipEncoderLayer(d, c.intermediate_size, c.num_attention_heads, c.hidden_act, c.layer_norm_eps));
    list->push_back(layers.back());
  }
  post_layernorm = vision_model->register_module("post_layernorm", LayerNorm(d, c.layer_norm_eps));
  visual_projection = register_module("visual_projection", Linear(d, c.projection_dim, false));
}

ClipVisionOutput ClipVisionModelImpl::forward(const torch::Tensor& pixel_values) {
  const int64_t s = config.image_size;
  if (pixel_values.dim() != 4 || pixel_values.size(1) != config.num_channels || pixel_values.size(2) != s ||
      pixel_values.size(3) != s)
    throw Error("image encoder", "pixel_values must be [batch, " + std::to_string(config.num_channels) + ", " +
                                     std::to_string(s) + ", " + std::to_string(s) + "]");
  const int64_t b = pixel_values.size(0);
  auto x = pixel_values.to(patch_embedding->weight.scalar_type());
  auto patches = patch_embedding(x).flatten(2).transpose(1, 2);  // [B, grid*grid, H], row-major over the grid
  auto cls = class_embedding.view({1, 1, -1}).expand({b, 1, -1});
  ClipVisionOutput out;
  out.embeddings = torch::cat({cls, patches}, 1) + position_embedding->weight.unsqueeze(0);
  auto h = pre_layrnorm(out.embeddings);
  out.hidden_states.push_back(h);
  for (auto& layer : layers) {
    h = layer->forward(h);  // no mask: every patch sees every other
    out.hidden_states.push_back(h);
  }
  out.last_hidden_state = h;
  out.pooled = post_layernorm(h.select(1, 0));
  out.image_embeds = visual_projection(out.pooled);
  return out;
}

ClipModelImpl::ClipModelImpl(const ClipModelConfig& c) : config(c) {
  vision = register_module("vision", ClipVisionModel(c.vision));
  text = register_module("text", ClipTextModel(c.text));
  logit_scale = register_parameter("logit_scale", torch::empty({}));
}

torch::Tensor ClipModelImpl::logits(const torch::Tensor& image_embeds, const torch::Tensor& text_embeds) const {
  return logit_scale.exp() * torch::matmul(l2_normalize(image_embeds), l2_normalize(text_embeds).t());
}

ClipModelOutput ClipModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& pixel_values) {
  ClipModelOutput out;
  out.vision = vision->forward(pixel_values);
  out.text = text->forward(input_ids);
  out.image_embeds_normalized = l2_normalize(out.vision.image_embeds);
  out.text_embeds_normalized = l2_normalize(out.text.text_embeds);
  out.logits_per_image = logit_scale.exp() * torch::matmul(out.image_embeds_normalized, out.text_embeds_normalized.t());
  return out;
}

torch::Tensor l2_normalize(const torch::Tensor& x) {
  auto norm = x.norm(2, -1, /*keepdim=*/true);
  return x / torch::where(norm == 0, torch::ones_like(norm), norm);
}

namespace {

bool exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

nlohmann::json read_config(const std::string& path) {
  if (!exists(path)) throw Error(path, "missing (a CLIPModel folder needs config.json)");
  return read_json_file(path);
}

}  // namespace

ClipModel load_clip_model(const std::string& folder, torch::Dtype dtype) {
  const std::string config_path = folder + "/config.json";
  auto config = parse_clip_model_config(read_config(config_path), config_path);
  std::string weights = folder + "/model.safetensors";
  if (!exists(weights) && exists(weights + ".index.json")) weights += ".index.json";
  if (!exists(weights)) {
    if (exists(folder + "/pytorch_model.bin"))
      throw Error(folder + "/pytorch_model.bin", "pickled weights are not loaded (they can run code); convert to safetensors");
    throw Error(folder, "no model.safetensors (a transformers CLIPModel folder)");
  }
  auto source = open_component_weights({weights});
  ClipModel model = built_from(config_path, [&] { return ClipModel(config); });
  model->to(dtype);
  // Each tower's own keys match the file (vision_model.*, visual_projection.*, text_model.*, text_projection.*).
  load_weights(*model->vision, *source);
  load_weights(*model->text, *source);
  if (!source->has("logit_scale")) throw Error(source->where(), "missing tensor 'logit_scale'");
  auto scale = source->get("logit_scale");
  if (scale.numel() != 1 || !scale.is_floating_point())
    throw Error(source->where(), "tensor 'logit_scale' must be one floating-point number");
  {
    torch::NoGradGuard no_grad;
    model->logit_scale.copy_(scale.reshape({}));
  }
  model->eval();
  return model;
}

}  // namespace lumen::nn
