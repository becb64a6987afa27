#include "clip_backbone.h"

#include <sys/stat.h>

#include "error.h"
#include "io/clip_preprocess_torch.h"

namespace lumen::train {

ClipBackbone::ClipBackbone(const std::string& folder_, const torch::Device& device_)
    : folder(folder_), model(nn::load_clip_model(folder_)), device(device_) {
  model->to(device);
  for (auto& p : model->parameters()) p.requires_grad_(false);  // a judge, not trained here
  const int64_t size = model->config.vision.image_size;
  const std::string pre = folder + "/preprocessor_config.json";
  struct stat st;
  if (::stat(pre.c_str(), &st) == 0) {
    processor = read_clip_processor_config(pre);
  } else {
    processor.shortest_edge = processor.crop_height = processor.crop_width = static_cast<int>(size);
  }
  if (!processor.do_center_crop || processor.crop_height != size || processor.crop_width != size)
    throw Error(pre, "the crop must be " + std::to_string(size) + "x" + std::to_string(size) +
                         ", the image tower's image_size");
}

torch::Tensor ClipBackbone::image_embeds(const torch::Tensor& images) {
  auto pixels = clip_pixel_values_differentiable(images.to(device), processor);
  return model->vision->forward(pixels).image_embeds;
}

}  // namespace lumen::train
