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
 * *_default_params() functions: a library built with a newer header reads
 * only the fields an older caller knows, and fills the rest with defaults.
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
#define LUMEN_API_VERSION 1

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
  const char* device;   /* "cpu" (default when NULL) */
  lumen_dtype dtype;    /* weights' dtype; F32 by default */
  int threads;          /* > 0: set the process's threads; 0: leave them (one per core at first use) */
} lumen_context_params;

LUMEN_API lumen_context_params lumen_context_default_params(void);

/* Loads a model: a diffusers folder or a single-file .safetensors checkpoint
 * (SD 1.x, 2.x, SDXL); NULL or "" loads the embedded default model. On
 * success *out is a new context, to be freed with lumen_context_free. */
LUMEN_API lumen_status lumen_context_create(const char* model_path, const lumen_context_params* params,
                                            lumen_context** out);
LUMEN_API void lumen_context_free(lumen_context* ctx);

/* ---- Adapters: LoRAs and ResAdapters, applied at run time and removable ---- */

typedef enum lumen_adapter_kind { LUMEN_ADAPTER_LORA = 0, LUMEN_ADAPTER_RESADAPTER = 1 } lumen_adapter_kind;

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

/* ---- Generation: txt2img, img2img, inpainting ---- */

/* Called after each sampler step; return nonzero to cancel (the call then
 * returns LUMEN_ERR_CANCELLED). Runs on the generating thread. */
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
} lumen_generation_params;

LUMEN_API lumen_generation_params lumen_generation_default_params(void);

/* Generates batch_size images; on success *out holds them (free with lumen_images_free). */
LUMEN_API lumen_status lumen_generate(lumen_context* ctx, const lumen_generation_params* params, lumen_images** out);

/* ---- Training and feedback learning: `lumen train` / `lumen feedback` recipes ---- */

/* Called after each training step with the step's loss; return nonzero to stop
 * (the run then checkpoints and returns LUMEN_ERR_CANCELLED; resume continues it). */
typedef int (*lumen_train_callback)(int64_t step, int64_t total, double loss, void* user_data);

/* Runs a recipe (configs/*.yaml); resume nonzero continues its run folder from
 * its last checkpoint. Blocks until the run ends. */
LUMEN_API lumen_status lumen_train(const char* recipe_path, int resume, lumen_train_callback callback, void* user_data);

#ifdef __cplusplus
}
#endif

#endif /* LUMEN_LUMEN_H */
