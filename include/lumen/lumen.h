/* Lumen's C API: Stable Diffusion (SD 1.x/2.x/SDXL) image generation and
 * training on LibTorch, behind a plain C interface that any language's FFI can
 * drive. No LibTorch, JSON or C++ type crosses it, and no exception: every
 * call that can fail returns a lumen_status, and lumen_last_error() gives the
 * message of the last failure on the calling thread.
 *
 *   lumen_context_params cp = lumen_context_default_params();
 *   lumen_context* ctx = NULL;
 *   if (lumen_context_create(NULL, &cp, &ctx) != LUMEN_OK)   // NULL: the embedded default model
 *     fprintf(stderr, "%s\n", lumen_last_error());
 *   lumen_generation_params gp = lumen_generation_default_params();
 *   gp.prompt = "a large red circle at the right on a black background";
 *   lumen_images* out = NULL;
 *   if (lumen_generate(ctx, &gp, &out) == LUMEN_OK) {
 *     lumen_image_write_png(&out->images[0], "out.png", 0);
 *     lumen_images_free(out);
 *   }
 *   lumen_context_free(ctx);
 *
 * Structs carry their size as first field (struct_size), set by the
 * *_default_params() helpers (inline, so the size is the caller's): a library
 * built with a newer header reads and writes only the fields an older caller
 * knows, and fills the rest with defaults. FFI callers use *_params_init().
 *
 * Threads: every function may be called from any thread. One context per
 * thread runs in parallel. A context runs one job at a time: a second
 * generate (or adapter change) on a busy context fails at once with
 * LUMEN_ERR_BUSY instead of waiting. LibTorch's thread count is process-wide:
 * the last lumen_set_threads() / context threads setting wins. */
#ifndef LUMEN_LUMEN_H
#define LUMEN_LUMEN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define LUMEN_API __declspec(dllexport)
#else
#define LUMEN_API __attribute__((visibility("default")))
#endif

/* The version of this header's interface; lumen_api_version() gives the library's. */
#define LUMEN_API_VERSION 2 /* 2: *_params_init, in-memory PNGs, finer generation controls, validation, stats */

typedef enum lumen_status {
  LUMEN_OK = 0,
  LUMEN_ERR_INVALID_ARGUMENT = 1, /* a NULL where a value is needed, an option out of range, a bad prompt */
  LUMEN_ERR_FILE = 2,             /* a model, adapter, image or recipe that is missing, unreadable or malformed */
  LUMEN_ERR_CANCELLED = 3,        /* a progress callback returned nonzero */
  LUMEN_ERR_BUSY = 4,             /* the context is running another job */
  LUMEN_ERR_OUT_OF_MEMORY = 5,
  LUMEN_ERR_INTERNAL = 6          /* anything else (the message says what) */
} lumen_status;

/* The library's version ("0.4.0") and interface version (LUMEN_API_VERSION it was built with). */
LUMEN_API const char* lumen_version(void);
LUMEN_API int lumen_api_version(void);

/* The message of the last call on this thread that did not return LUMEN_OK
 * ("" if none): "<file or subject>: <problem>". Valid until the next failing
 * call on the same thread. */
LUMEN_API const char* lumen_last_error(void);

/* LibTorch's intra-op threads for the whole process; n <= 0: one per core. */
LUMEN_API void lumen_set_threads(int n);

/* ---- Contexts: one loaded model ---- */

typedef struct lumen_context lumen_context;

typedef enum lumen_dtype { LUMEN_DTYPE_F32 = 0, LUMEN_DTYPE_BF16 = 1, LUMEN_DTYPE_F16 = 2 } lumen_dtype;

typedef struct lumen_context_params {
  uint32_t struct_size; /* sizeof(lumen_context_params) */
  const char* device;   /* "cpu" (default when NULL), "cuda" or "cuda:N" (a LibTorch with CUDA) */
  lumen_dtype dtype;    /* weights' dtype; F32 by default */
  int threads;          /* > 0: set the process's threads; 0: leave them (one per core at first use) */
  /* since API 2 */
  const char* config_override; /* a YAML/JSON file overriding detected model config fields; NULL: none */
} lumen_context_params;

/* Fills the first `size` bytes of *params (the caller's sizeof) with the
 * defaults, struct_size included. The library never writes past `size`, so a
 * caller built against an older, smaller struct stays safe. */
LUMEN_API void lumen_context_params_init(lumen_context_params* params, size_t size);
static inline lumen_context_params lumen_context_default_params(void) {
  lumen_context_params p;
  lumen_context_params_init(&p, sizeof p);
  return p;
}

/* Loads a model: a diffusers folder or a single-file .safetensors checkpoint
 * (SD 1.x, 2.x, SDXL); NULL or "" loads the embedded default model. On
 * success *out is a new context, to be freed with lumen_context_free. */
LUMEN_API lumen_status lumen_context_create(const char* model_path, const lumen_context_params* params,
                                            lumen_context** out);
/* Waits for a job running on the context, then frees it. Not from that job's
 * own progress callback: it would wait for itself (return nonzero from the
 * callback to cancel, and free the context after lumen_generate returns). */
LUMEN_API void lumen_context_free(lumen_context* ctx);

/* ---- Adapters: LoRAs and ResAdapters, applied at run time and removable ---- */

typedef enum lumen_adapter_kind {
  LUMEN_ADAPTER_LORA = 0,
  LUMEN_ADAPTER_RESADAPTER = 1,      /* as the reference: its norms replace the model's; the scale scales its LoRA half */
  LUMEN_ADAPTER_RESADAPTER_BLEND = 2 /* norms (1 - scale)·model's + scale·adapter's, LoRA half at scale */
} lumen_adapter_kind;

/* Applies a LoRA file (kohya, diffusers/PEFT; conv LoRA too) or a ResAdapter
 * (its folder, or "LORA_FILE,NORMS_FILE") at `scale`. *id_out (may be NULL)
 * names it for the calls below. On failure the model is unchanged. */
LUMEN_API lumen_status lumen_adapter_apply(lumen_context* ctx, lumen_adapter_kind kind, const char* path, float scale,
                                           int* id_out);
LUMEN_API lumen_status lumen_adapter_set_scale(lumen_context* ctx, int id, float scale);
/* Takes the adapter off; the model's weights are exactly as before it was applied. */
LUMEN_API lumen_status lumen_adapter_remove(lumen_context* ctx, int id);
/* How many adapters are applied, and each one's id, kind, path and scale (index 0..count-1). */
LUMEN_API int lumen_adapter_count(const lumen_context* ctx);
typedef struct lumen_adapter_info {
  int id;
  lumen_adapter_kind kind;
  const char* path; /* owned by the context; valid until the adapter is removed */
  float scale;
} lumen_adapter_info;
LUMEN_API lumen_status lumen_adapter_get(const lumen_context* ctx, int index, lumen_adapter_info* info);
/* What applying adapter `id` matched ("12 LoRA pairs on 12 modules ..."), or
 * NULL if no such adapter; owned by the context like info.path. */
LUMEN_API const char* lumen_adapter_summary(const lumen_context* ctx, int id);

/* ---- Images: 8-bit RGB, row-major, no padding ---- */

typedef struct lumen_image {
  uint32_t width, height;
  uint8_t* pixels;        /* width·height·3 bytes */
  uint64_t seed;          /* the seed that made it (generated images) */
  const char* parameters; /* A1111's "parameters" text (generated images); may be NULL */
} lumen_image;

typedef struct lumen_images {
  size_t count;
  lumen_image* images;
} lumen_images;

LUMEN_API void lumen_images_free(lumen_images* images);

/* Writes a PNG atomically, with the image's parameters text as A1111 does.
 * Refuses to replace an existing file unless overwrite is nonzero. */
LUMEN_API lumen_status lumen_image_write_png(const lumen_image* image, const char* path, int overwrite);
/* Reads PNG/JPEG/BMP/... as RGB; free with lumen_images_free (count 1). */
LUMEN_API lumen_status lumen_image_read(const char* path, lumen_images** out);
/* The same two in memory (a server's uploads and replies): the PNG's *size
 * bytes in *data (free with lumen_free), and an image decoded from bytes.
 * Decoding refuses (LUMEN_ERR_FILE) an image of more than max_pixels pixels
 * before allocating it (0: the library's limit, 16384²). */
LUMEN_API lumen_status lumen_image_encode_png(const lumen_image* image, uint8_t** data, size_t* size);
LUMEN_API lumen_status lumen_image_decode(const void* data, size_t size, int64_t max_pixels, lumen_images** out);
/* Frees memory the library handed out (lumen_image_encode_png's bytes). */
LUMEN_API void lumen_free(void* p);

/* ---- Generation: txt2img, img2img, inpainting ---- */

/* Called after each sampler step; return nonzero to cancel (the call then
 * returns LUMEN_ERR_CANCELLED). Runs on the generating thread, with the
 * context busy: other calls on it answer LUMEN_ERR_BUSY, and freeing it from
 * here would deadlock. */
typedef int (*lumen_progress_callback)(int step, int total, void* user_data);

typedef struct lumen_generation_params {
  uint32_t struct_size;
  const char* prompt;          /* A1111 syntax: (word:1.2), [word], BREAK */
  const char* negative_prompt; /* NULL: none */
  const char* sampler;         /* NULL: the model's scheduler; else e.g. "euler", "euler_a", "ddim", "dpmpp_2m" */
  int steps;                   /* 0: the model's recommendation (or 20) */
  float cfg_scale;             /* < 0: the model's recommendation (or 7) */
  float guidance_rescale;      /* CFG rescale phi (Lin et al. 2023); < 0: the model's recommendation (or 0) */
  int width, height;           /* 0: the model's native size */
  uint64_t seed;               /* image i of the batch uses seed + i */
  int batch_size;              /* images in one call; 1 by default */
  /* img2img / inpainting: NULL for txt2img. The mask is white where the image is repainted. */
  const lumen_image* init_image;
  const lumen_image* mask;
  float strength; /* img2img: how much of the schedule is run, 0..1 (default 0.75) */
  lumen_progress_callback progress;
  void* user_data;

  /* since API 2: the finer controls (the defaults leave each to the model) */
  int clip_skip;                /* A1111 numbering: 2 = the penultimate CLIP layer; 0 or 1: the last */
  int plain_prompt;             /* nonzero: no weighting syntax, truncated at 77 tokens (as diffusers) */
  float eta;                    /* DDIM eta (0) */
  int rescale_in_v_space;       /* nonzero: the CFG rescale in v-space, not on the raw model output */
  const char* prediction_type;  /* override: "epsilon", "v_prediction", "sample"; NULL: the model's */
  const char* timestep_spacing; /* override: "leading", "trailing", "linspace"; NULL: the model's */
  int zero_terminal_snr;        /* -1: the model's; 0: off; 1: rescale the schedule to zero terminal SNR */
  int karras_sigmas;            /* -1: the model's; 0: off; 1: Karras sigmas (Euler, DPM++) */
  int original_size[2];         /* SDXL micro-conditioning {width, height}; {0, 0}: the generated size */
  int target_size[2];           /* {width, height}; {0, 0}: the generated size */
  int crop_top_left[2];         /* {top, left} */
  int vae_tiling;               /* nonzero: decode in overlapping tiles (bounded memory, not exact) */
  int vae_tile_size;            /* tile side in pixels; 0: the VAE's sample size */
  struct lumen_generation_stats* stats; /* if not NULL, filled with where the time went */
} lumen_generation_params;

typedef struct lumen_generation_stats {
  uint32_t struct_size;  /* the caller sets sizeof(lumen_generation_stats); the library writes no further */
  double encode_seconds; /* text (and img2img image) encoding */
  double denoise_seconds;
  double decode_seconds;
  int steps; /* sampler steps run */
} lumen_generation_stats;

/* As lumen_context_params_init: defaults for the first `size` bytes. */
LUMEN_API void lumen_generation_params_init(lumen_generation_params* params, size_t size);
static inline lumen_generation_params lumen_generation_default_params(void) {
  lumen_generation_params p;
  lumen_generation_params_init(&p, sizeof p);
  return p;
}

/* Checks what can be checked without a model (sizes, steps, scales, sampler
 * name, overrides, the prompts' length and bracket nesting), so a program can
 * refuse bad options before the slow load. lumen_generate checks them again,
 * and what needs the model (the prompt's token count, memory). */
LUMEN_API lumen_status lumen_generation_validate(const lumen_generation_params* params);

/* Generates batch_size images; on success *out holds them (free with lumen_images_free). */
LUMEN_API lumen_status lumen_generate(lumen_context* ctx, const lumen_generation_params* params, lumen_images** out);

/* ---- Training and feedback learning: `lumen train` / `lumen feedback` recipes ---- */

/* Called after each training step with the step's loss; return nonzero to stop
 * (the run then checkpoints and returns LUMEN_ERR_CANCELLED; resume continues it). */
typedef int (*lumen_train_callback)(int64_t step, int64_t total, double loss, void* user_data);

/* Runs a recipe (configs/*.yaml); resume nonzero continues its run folder from
 * its last checkpoint. Blocks until the run ends. (lumen_train_run with the
 * defaults otherwise.) */
LUMEN_API lumen_status lumen_train(const char* recipe_path, int resume, lumen_train_callback callback, void* user_data);

/* What a recipe asks for, read and checked without running it (API 2). */
typedef struct lumen_recipe_info {
  uint32_t struct_size; /* the caller sets sizeof(lumen_recipe_info) */
  char task[32];        /* "vae", "diffusion", "lora", "resadapter", "feedback", "segmenter", "reward" */
  int feedback;         /* nonzero: UniFL feedback learning or a judge it uses (what `lumen feedback` runs) */
  int64_t steps, batch_size;
  char output[4096];    /* the run folder */
} lumen_recipe_info;
LUMEN_API lumen_status lumen_recipe_read_info(const char* recipe_path, lumen_recipe_info* info);

typedef struct lumen_train_result {
  uint32_t struct_size;   /* the caller sets sizeof(lumen_train_result) */
  int64_t first_step;     /* where this call started (0, or the checkpoint resumed) */
  int64_t last_step;      /* steps done when it stopped */
  double seconds;         /* this call's training time */
  double total_seconds;   /* the run's, over every call */
  int finished;           /* reached the recipe's steps and wrote final/ */
  char final_folder[4096];
} lumen_train_result;

typedef struct lumen_train_params {
  uint32_t struct_size;
  int resume;             /* nonzero: continue the run folder from its last checkpoint */
  int64_t stop_after;     /* > 0: stop after this many steps of this call, with a checkpoint (every rank alike) */
  int threads;            /* > 0: instead of the recipe's threads */
  int progress_bar;       /* nonzero: a progress bar on stderr when it is a terminal */
  lumen_train_callback callback; /* may be NULL; nonzero from it stops as stop_after does (one process only) */
  void* user_data;
  lumen_train_result* result; /* if not NULL, filled (also when stopped) */
} lumen_train_params;

LUMEN_API void lumen_train_params_init(lumen_train_params* params, size_t size);
static inline lumen_train_params lumen_train_default_params(void) {
  lumen_train_params p;
  lumen_train_params_init(&p, sizeof p);
  return p;
}
/* Runs a recipe with these params. Stopped by the callback: LUMEN_ERR_CANCELLED
 * (checkpointed); stopped by stop_after: LUMEN_OK with result->finished 0. */
LUMEN_API lumen_status lumen_train_run(const char* recipe_path, const lumen_train_params* params);

#ifdef __cplusplus
}
#endif

#endif /* LUMEN_LUMEN_H */
