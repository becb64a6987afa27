// A training recipe: one YAML file under configs/ says what `lumen train`
// trains, on what data, with which optimiser and schedule. Every field is
// checked; an error names the file, the line and the field.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lumen::train {

enum class Task {
  Vae,        // AutoencoderKL: reconstruction + KL
  Diffusion,  // UNet (and optionally the text encoder) on the denoising loss
  Lora,       // LoRA adapters on an existing model, denoising loss
};

struct DatasetSpec {
  std::string type;  // "shapes" | "folder"
  int64_t width = 64, height = 64;
  // shapes: which full captions are drawn, and how often size / position are dropped.
  std::string split = "train";
  double drop_size = 0.15, drop_position = 0.15;
  // shapes, split train: also draw the evaluation split's captions, always
  // without their size word, so they are never shown as full captions (the
  // contract's rule) while their position phrase is still taught. SHAPES.md's
  // index rule puts every "at the left" caption in the evaluation split, so
  // without this the word "left" never reaches a model.
  bool held_out_without_size = false;
  // folder: images with caption sidecars (image.png + image.txt).
  std::string path;
  std::string caption_extension = ".txt";
};

struct OptimizerSpec {
  double lr = 1e-4, weight_decay = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t warmup_steps = 0;
  std::string lr_schedule = "constant";  // "constant" | "cosine"
  double min_lr_ratio = 0.1;              // cosine ends at lr · this
  double grad_clip = 1.0;                 // max global gradient norm; 0 = off
};

// How training timesteps are drawn: t = floor(T · u^(1/exponent)), u ~ U[0,1).
// exponent 1 is uniform; > 1 gives the high-noise steps (where colour and
// layout are decided) a larger share.
struct TimestepSampling {
  double exponent = 1.0;
};

struct SampleSpec {  // periodic sample grids and ShapesWorld judging
  int64_t every = 0;  // steps; 0 = never
  std::string sampler = "ddim";
  int64_t steps = 20;
  double cfg_scale = 4.0, guidance_rescale = 0.7;
  std::vector<std::string> prompts;  // grid prompts (default: eight ShapesWorld captions)
  int64_t judge_captions = 0;        // >0: judge that many seen-split captions, log `correct`
};

struct Recipe {
  std::string file;  // where it was read from
  Task task = Task::Diffusion;
  std::string output;  // run folder
  uint64_t seed = 0;
  int threads = 0;
  int64_t steps = 0, batch_size = 1;
  std::string precision = "f32";  // "f32" | "bf16" (autocast; weights and optimiser stay f32)
  bool gradient_checkpointing = false;  // refused for now: LibTorch C++ has no torch.utils.checkpoint
  DatasetSpec dataset;
  OptimizerSpec optimizer;
  double ema_decay = 0;  // 0 = no EMA
  int64_t checkpoint_every = 500, keep_checkpoints = 2, log_every = 10;
  SampleSpec sample;

  // vae
  nlohmann::json vae_config;
  std::string vae_init;              // start from this VAE folder instead of a fresh one
  bool vae_decoder_only = false;     // train the decoder alone: latents stay exactly as before
  double kl_weight = 1e-6;
  double mse_weight = 0;  // added to the L1 reconstruction loss

  // diffusion / lora
  std::string base_model;  // lora: the model adapted; diffusion: start from it (optional)
  std::string vae;         // diffusion from scratch: a trained VAE component folder
  nlohmann::json unet_config, text_encoder_config;  // diffusion from scratch
  bool train_text_encoder = true;
  nlohmann::json schedule;  // diffusers scheduler config dict
  TimestepSampling timesteps;
  double caption_dropout = 0.1;

  // lora
  int64_t lora_rank = 4;
  double lora_alpha = 4;
  bool lora_text_encoder = false;
  bool lora_conv = false;  // also the 3x3 convolutions of the ResNet blocks (LoCon)
};

// Reads and validates a recipe; throws lumen::Error "<file>:<line>: <field>: <problem>".
Recipe read_recipe(const std::string& path);

const char* task_name(Task task);

}  // namespace lumen::train
