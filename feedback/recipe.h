// A training recipe: one YAML file under configs/ says what `lumen train`
// trains, on what data, with which optimiser and schedule. Every field is
// checked; an error names the file, the line and the field.
#pragma once
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lumen::train {

enum class Task {
  Vae,        // AutoencoderKL: reconstruction + KL
  Diffusion,  // UNet (and optionally the text encoder) on the denoising loss
  Lora,       // LoRA adapters on an existing model, denoising loss
  Segmenter,  // ShapesWorld perception model (per-pixel shape labels) for perceptual feedback
  Reward,     // ShapesWorld reward model of one dimension, Bradley–Terry on preference pairs
  Feedback,   // UniFL feedback learning (`lumen feedback`): LoRA or UNet on rewards
  ResAdapter, // ResAdapter: LoRA on the UNet's down/upsamplers + its ResNet GroupNorms, multi-resolution data
};

struct Resolution {
  int64_t width = 64, height = 64;
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
  // Multi-resolution data (several "WxH"): each batch is drawn at one of them,
  // with batch_size scaled by width·height / (W·H), so every batch holds about
  // as many pixels. ShapesWorld draws the resolution uniformly; a folder
  // assigns each image to the resolution ("bucket") nearest its aspect ratio,
  // as kohya does, and draws a bucket in proportion to its images.
  std::vector<Resolution> resolutions;
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
  // Extra resolutions: the grid gets a row at each, and judging (when asked)
  // logs correct_WxH for each.
  std::vector<Resolution> sizes;
};

// task: segmenter / reward — the small networks' shapes and data.
struct JudgeModelSpec {
  std::vector<int64_t> channels;  // empty: the network's default
  int64_t hidden = 128;           // reward only
  std::string dimension;          // reward only: colour | shape | layout | background | global
  double corrupt = 0.5;           // strength of the noise/blur/contrast corruptions
  double vae_roundtrip = 0.5;     // share of images passed through model.base's VAE (when given)
  bool colour = false;            // segmenter only: label shape and colour (kColourLabelClasses)
  int64_t eval_pairs = 512;       // held-out pairs (evaluation-split captions) judged at the end
};

// One reward of the feedback loss: hinge ReLU(alpha − r) with a weight.
struct RewardTerm {
  std::string kind = "shapes";  // shapes (a `task: reward` folder) | clip | aesthetic | torchscript
  std::string model;            // folder or file
  std::string clip;             // aesthetic: the CLIP model folder whose image embeddings it reads
  double weight = 1.0;
  double alpha = std::nan("");  // unset: a shapes reward's mean on preferred held-out images
  int line = 0;                 // recipe line, for errors
};

struct FeedbackSpec {
  std::string sampler = "ddim";
  std::vector<int64_t> steps{1, 2, 4};  // inference step counts, one drawn per training step
  double cfg_scale = 1.0, guidance_rescale = 0.0;
  double denoising_weight = 1.0;  // the ordinary denoising loss, as a regulariser
  // Perceptual feedback: the training image's latent noised to a start step of
  // the schedule, denoised without gradients to a later one, one step with them.
  std::string perceptual_model;  // a `task: segmenter` folder; empty: no PeFL
  std::string perceptual_kind = "segmentation";  // segmentation | style (Gram matrices of its features)
  double perceptual_weight = 1.0;
  std::string perceptual_reduction = "pixels";  // pixels (mean) | shape_area (each image's sum over its shape's area)
  // Weight of ShapesWorld's own foreground rule (foreground_losses) added to
  // the segmenter's loss, against the same annotation; 0: the segmenter alone.
  double perceptual_foreground_weight = 0;
  // Weight of ShapesWorld's background criterion (background_losses, the
  // judge's bg_error) added to the same per-image loss; 0: not used.
  double perceptual_background_weight = 0;
  std::vector<RewardTerm> rewards;  // decoupled (or one global) rewards on x0 from pure noise
  // Adversarial feedback: a reward model made discriminator (real = renders).
  std::string adversarial_init;  // a `task: reward` folder; empty: no adversarial stage
  double adversarial_weight = 1.0, discriminator_lr = 1e-4;
  // Prompt selection for the reward terms.
  std::string prompt_selection = "random";  // random | active
  int64_t prompt_pool = 128, prompt_keep = 48, prompt_refresh = 50;
  double prompt_similarity = 0.8;  // caption-feature cosine at or above which a prompt is a near duplicate
  int64_t prompt_batch = 0;        // prompts per step (0: batch_size)
  std::string prompt_file;         // one prompt per line (default: ShapesWorld's training captions)
  std::string init_lora;           // continue this LoRA (stage 2 from stage 1)
};

struct Recipe {
  std::string file;  // where it was read from
  Task task = Task::Diffusion;
  std::string output;  // run folder
  uint64_t seed = 0;
  int threads = 0;
  int64_t steps = 0, batch_size = 1;
  // Shards of the data per step, each of batch_size (0: one per process).
  // Each process takes every WORLD_SIZE-th and accumulates their gradients, so
  // a run sees the same data, noise and steps whatever the number of processes.
  int64_t data_shards = 0;
  std::string precision = "f32";  // "f32" | "bf16" (autocast; weights and optimiser stay f32)
  bool gradient_checkpointing = false;  // UNet and VAE decoder recompute activations in backward
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
  bool use_lora = true;    // feedback: LoRA (a `lora` section) or the whole UNet
  // ResAdapter: weight of matching the frozen base UNet's output on batches at
  // the model's own size (dataset width × height); 0 = the denoising loss alone.
  double resadapter_preserve_base = 0;

  JudgeModelSpec judge_model;  // segmenter / reward
  FeedbackSpec feedback;
};

// Reads and validates a recipe; throws lumen::Error "<file>:<line>: <field>: <problem>".
Recipe read_recipe(const std::string& path);

const char* task_name(Task task);

}  // namespace lumen::train
