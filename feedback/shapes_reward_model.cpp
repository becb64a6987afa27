#include "shapes_reward_model.h"

#include "error.h"
#include "runtime.h"
#include "model_folder.h"
#include "shapes_supervision.h"

namespace lumen::train {
namespace F = torch::nn::functional;

ShapesRewardImpl::ShapesRewardImpl(ShapesRewardConfig c) : config(std::move(c)) {
  const int64_t levels = static_cast<int64_t>(config.channels.size());
  if (levels < 1 || config.resolution % (int64_t{1} << levels) != 0)
    throw Error("reward model", "resolution " + std::to_string(config.resolution) + " must be a multiple of 2^levels");
  convs = register_module("convs", torch::nn::ModuleList());
  int64_t in = 3;
  for (int64_t ch : config.channels) {
    convs->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(in, ch, 4).stride(2).padding(1)));
    in = ch;
  }
  const int64_t side = config.resolution >> levels;
  film = register_module("film", torch::nn::Linear(kCaptionFeatures, 2 * in));
  image_head = register_module("image_head", torch::nn::Linear(in * side * side, config.hidden));
  caption_head = register_module("caption_head", torch::nn::Linear(kCaptionFeatures, config.hidden));
  out1 = register_module("out1", torch::nn::Linear(2 * config.hidden, config.hidden));
  out2 = register_module("out2", torch::nn::Linear(config.hidden, 1));
}

torch::Tensor ShapesRewardImpl::forward(const torch::Tensor& images, const torch::Tensor& features) {
  if (images.size(2) != config.resolution || images.size(3) != config.resolution)
    throw Error("reward model (" + config.dimension + ")",
                "was trained on " + std::to_string(config.resolution) + "x" + std::to_string(config.resolution) +
                    " images, given " + std::to_string(images.size(3)) + "x" + std::to_string(images.size(2)));
  auto h = images;
  for (const auto& conv : *convs) h = F::leaky_relu(conv->as<torch::nn::Conv2d>()->forward(h), F::LeakyReLUFuncOptions().negative_slope(0.2));
  const auto gb = film(features).unsqueeze(-1).unsqueeze(-1).chunk(2, 1);
  h = h * (1 + gb[0]) + gb[1];
  const auto img = F::leaky_relu(image_head(h.flatten(1)), F::LeakyReLUFuncOptions().negative_slope(0.2));
  const auto cap = caption_head(features);
  const auto joint = F::leaky_relu(out1(torch::cat({img * cap, img}, 1)), F::LeakyReLUFuncOptions().negative_slope(0.2));
  return out2(joint).squeeze(1);
}

torch::Tensor bradley_terry_loss(const torch::Tensor& preferred, const torch::Tensor& rejected) {
  return -F::logsigmoid(preferred - rejected).mean();
}

nlohmann::json to_json(const ShapesRewardConfig& c) {
  return {{"kind", "shapes_reward"}, {"dimension", c.dimension}, {"resolution", c.resolution},
          {"channels", c.channels}, {"hidden", c.hidden}};
}

ShapesRewardConfig reward_config(const nlohmann::json& j, const std::string& where) {
  ShapesRewardConfig c;
  c.dimension = config_field(j, "dimension", c.dimension, where);
  c.resolution = config_field(j, "resolution", c.resolution, where);
  c.channels = config_field(j, "channels", c.channels, where);
  c.hidden = config_field(j, "hidden", c.hidden, where);
  parse_dimension(c.dimension, where);
  if (c.resolution < 16 || c.resolution > 1024 || c.channels.empty() || c.channels.size() > 6 || c.hidden < 1 ||
      c.hidden > 4096)
    throw Error(where, "bad reward model config (resolution 16..1024, 1..6 channel levels, hidden 1..4096)");
  for (auto ch : c.channels)
    if (ch < 1 || ch > 4096) throw Error(where, "reward model channels must be in 1..4096");
  const int64_t levels = static_cast<int64_t>(c.channels.size());
  if (c.resolution % (int64_t{1} << levels) != 0)
    throw Error(where, "resolution " + std::to_string(c.resolution) + " must be a multiple of 2^" +
                           std::to_string(levels) + " (one halving per channel level)");
  // Checked before anything is allocated: a config once asked for 16,000 GiB.
  double parameters = 0;
  int64_t in = 3;
  for (int64_t ch : c.channels) parameters += 16.0 * static_cast<double>(in * ch), in = ch;
  const double side = static_cast<double>(c.resolution >> levels);
  parameters += static_cast<double>(in) * side * side * static_cast<double>(c.hidden) + 2.0 * c.hidden * c.hidden;
  if (parameters > kMaxJudgeParameters) throw Error(where, too_many_parameters(parameters));
  return c;
}

void save_reward(const std::string& folder, ShapesReward& model, nlohmann::json extra) {
  auto config = to_json(model->config);
  config.update(extra);
  save_model_folder(folder, *model, config);
}

ShapesReward load_reward(const std::string& folder, bool trainable) {
  const auto config = read_model_config(folder, "shapes_reward");
  const std::string where = folder + "/config.json";
  ShapesReward model = built_from(where, [&] { return ShapesReward(reward_config(config, where)); });
  load_model_weights(folder, *model);
  for (auto& p : model->parameters()) p.set_requires_grad(trainable);
  return model;
}

}  // namespace lumen::train
