// Generation: txt2img, img2img and inpainting for SD 1.x/2.x/SDXL, with
// classifier-free guidance in one batched UNet call and CFG rescale.
#pragma once
#include <torch/torch.h>

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/model_loader.h"
#include "pipeline/conditioning.h"
#include "samplers/scheduler.h"

namespace lumen {

enum class RescaleSpace {
  ModelOutput,  // diffusers: rescale the raw UNet output (ε or v)
  V,            // ComfyUI: convert to v first, so ε- and v-models behave alike
};

// Guidance scales above this are refused: they only overflow the latents.
constexpr double kMaxCfgScale = 100;
constexpr int64_t kMaxSteps = 1000;

struct GenerationOptions {
  std::string prompt, negative_prompt;
  std::vector<std::string> prompts, negative_prompts;  // one per batch item; override the above
  std::string prompt_2, negative_prompt_2;             // SDXL's second encoder (empty: same as above)
  bool negative_is_null = false;  // no negative prompt at all (SDXL then uses zeros, as the reference)

  std::string sampler;  // "" = the model's scheduler class
  int64_t steps = 20;
  double cfg_scale = 7.0;
  double guidance_rescale = 0.0;
  RescaleSpace rescale_space = RescaleSpace::ModelOutput;
  int64_t width = 0, height = 0;  // 0 = the model's native size
  uint64_t seed = 0;              // image i of a batch uses seed + i
  int64_t batch_size = 1;
  PromptEncoding encoding;

  // Scheduler overrides of the model's own config.
  std::optional<std::string> prediction_type, timestep_spacing;
  std::optional<bool> zero_terminal_snr, karras_sigmas;
  double eta = 0.0;

  // img2img / inpainting: image [1|B,3,H,W] in [-1,1]; mask [1|B,1,H,W], 1 = repaint.
  torch::Tensor init_image, mask;
  double strength = 0.75;

  // SDXL micro-conditioning; zeros mean the generated size.
  std::array<int64_t, 2> original_size{0, 0}, target_size{0, 0}, crop_top_left{0, 0};

  bool vae_tiling = false;  // decode in overlapping tiles (nn/vae_tiling.h): bounded memory for large images
  int64_t vae_tile_size = 0;  // tile side in pixels (0: the VAE's sample size)
  torch::Tensor initial_latents;  // replaces the seeded noise (before init_noise_sigma)
  std::function<void(int64_t step, int64_t total, const torch::Tensor& latents)> on_step;
};

// Where a generation's time went (wall clock, seconds).
struct GenerationTimes {
  double encode = 0, denoise = 0, decode = 0;  // text (and img2img image) encoding, the sampler loop, VAE decoding
  int64_t steps = 0;                           // sampler steps run
};

struct GenerationResult {
  torch::Tensor images;   // [B,H,W,3] float in [0,1]
  torch::Tensor latents;  // final latents (model space)
  torch::Tensor timesteps;
  Conditioning cond, uncond;
  torch::Tensor add_time_ids;  // SDXL
  std::vector<uint64_t> seeds;
  GenerationTimes times;
};

// Checks what does not depend on the model (steps, scales, size and batch
// limits, prompt syntax and length), so a caller can refuse bad options before
// loading anything. generate() checks again, with the model.
void validate_options(const GenerationOptions& options);
// Width and height (0: the model's) must be multiples of the model's down-sampling factor.
void check_size_factor(const GenerationOptions& options, int64_t factor);

class Pipeline {
 public:
  // `scheduler_config`: diffusers scheduler config (null: the model's, or the family default).
  explicit Pipeline(std::shared_ptr<LoadedModel> model, nlohmann::json scheduler_config = nullptr);
  GenerationResult generate(const GenerationOptions& options) const;
  const LoadedModel& model() const { return *model_; }
  // The scheduler config that generation starts from, and the class it names.
  const nlohmann::json& scheduler_config() const { return scheduler_config_; }

 private:
  std::unique_ptr<samplers::Scheduler> make_scheduler(const GenerationOptions& options) const;
  std::string scheduler_where() const;  // the model's scheduler config, for errors
  std::shared_ptr<LoadedModel> model_;
  nlohmann::json scheduler_config_;
};

// The image side the model was made for: the UNet's sample size × the VAE's factor.
int64_t native_image_size(const LoadedModel& model);

// A UNet step's FLOPs for these options, estimated as 2 per UNet parameter per
// latent pixel per batch item (exact at the full-resolution levels, an
// overestimate for deeper ones): enough to tell small work from large.
double estimated_unet_step_flops(const LoadedModel& model, const GenerationOptions& options);

// Clean latents noised for a start at step `index` of the scheduler's
// timesteps (img2img, inpainting, feedback learning's perceptual start).
torch::Tensor add_noise(const samplers::Scheduler& s, const torch::Tensor& x, const torch::Tensor& noise, int64_t index);

// The scheduler config used when the files carry none (SD's training schedule).
nlohmann::json default_scheduler_config();

}  // namespace lumen
