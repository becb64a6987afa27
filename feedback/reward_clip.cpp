// PickScore-style CLIP preference: exp(logit_scale) * cos(image, prompt),
// i.e. the matching entry of CLIPModel's logits_per_image.
#include <sys/stat.h>

#include "clip_backbone.h"
#include "error.h"
#include "model/model_loader.h"
#include "reward.h"

namespace lumen::train {
namespace {

bool is_file(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// CLIPProcessor.save_pretrained puts vocab.json/merges.txt in the model folder;
// a tokenizer/ subfolder (diffusers-style) also works; else the embedded CLIP BPE.
// The pad token does not change the score: the causal mask keeps padding after
// the EOS from reaching it, and pooling happens at the EOS.
TokenizerPlan tokenizer_for(const std::string& folder) {
  for (const std::string dir : {folder, folder + "/tokenizer"})
    if (is_file(dir + "/vocab.json") && is_file(dir + "/merges.txt"))
      return {dir + "/vocab.json", dir + "/merges.txt", "<|endoftext|>"};
  return embedded_tokenizer("<|endoftext|>");
}

class ClipReward : public ImageReward {
 public:
  ClipReward(const std::string& folder, const torch::Device& device)
      : clip_(folder, device), tokenizer_(load_tokenizer(tokenizer_for(folder), &pad_id_)) {}

  torch::Tensor score(const torch::Tensor& images, const std::vector<std::string>& prompts) override {
    const int64_t b = images.dim() == 4 ? images.size(0) : 0;
    if (prompts.size() != 1 && static_cast<int64_t>(prompts.size()) != b)
      throw Error("clip reward", std::to_string(prompts.size()) + " prompts for " + std::to_string(b) +
                                     " images (give one per image, or one for all)");
    const int length = static_cast<int>(clip_.model->config.text.max_position_embeddings);
    std::vector<int64_t> ids;
    for (const auto& p : prompts) {
      auto row = tokenizer_->encode_padded(p, length, pad_id_);
      ids.insert(ids.end(), row.begin(), row.end());
    }
    auto id_tensor =
        torch::tensor(ids, torch::kLong).view({static_cast<int64_t>(prompts.size()), length}).to(clip_.device);
    auto text = nn::l2_normalize(clip_.model->text->forward(id_tensor).text_embeds);
    auto image = nn::l2_normalize(clip_.image_embeds(images));
    return (clip_.model->logit_scale.exp() * (image * text).sum(-1)).to(torch::kFloat);
  }

 private:
  ClipBackbone clip_;
  int64_t pad_id_ = 49407;
  std::shared_ptr<ClipTokenizer> tokenizer_;
};

}  // namespace

std::unique_ptr<ImageReward> make_clip_reward(const std::string& clip_folder, const torch::Device& device) {
  return std::make_unique<ClipReward>(clip_folder, device);
}

}  // namespace lumen::train
