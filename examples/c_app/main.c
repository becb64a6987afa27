/* A C app on the installed Lumen package (find_package(lumen)): txt2img with
 * a progress line and an optional LoRA, the PNG written with its parameters.
 *   c_app [-m MODEL] [--lora FILE] "PROMPT" OUT.png     (no -m: the embedded default model) */
#include <lumen/lumen.h>

#include <stdio.h>
#include <string.h>

static int show_progress(int step, int total, void* user_data) {
  (void)user_data;
  fprintf(stderr, "\rstep %d/%d", step, total);
  if (step == total) fprintf(stderr, "\n");
  return 0; /* nonzero would cancel */
}

int main(int argc, char** argv) {
  const char *model = NULL, *lora = NULL, *prompt = NULL, *out = NULL;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "-m") == 0 && i + 1 < argc) model = argv[++i];
    else if (strcmp(argv[i], "--lora") == 0 && i + 1 < argc) lora = argv[++i];
    else if (!prompt) prompt = argv[i];
    else if (!out) out = argv[i];
  }
  if (!prompt || !out) {
    fprintf(stderr, "usage: %s [-m MODEL] [--lora FILE] PROMPT OUT.png\n", argv[0]);
    return 2;
  }
  fprintf(stderr, "Lumen %s (C API %d)\n", lumen_version(), lumen_api_version());
  lumen_context_params cp = lumen_context_default_params();
  cp.threads = 1; /* small models run fastest on one thread */
  lumen_context* ctx = NULL;
  if (lumen_context_create(model, &cp, &ctx) != LUMEN_OK) {
    fprintf(stderr, "error: %s\n", lumen_last_error());
    return 1;
  }
  if (lora && lumen_adapter_apply(ctx, LUMEN_ADAPTER_LORA, lora, 1.0f, NULL) != LUMEN_OK) {
    fprintf(stderr, "error: %s\n", lumen_last_error());
    lumen_context_free(ctx);
    return 1;
  }
  lumen_generation_params gp = lumen_generation_default_params();
  gp.prompt = prompt;
  gp.seed = 1000;
  gp.progress = show_progress;
  lumen_images* images = NULL;
  int code = 0;
  if (lumen_generate(ctx, &gp, &images) != LUMEN_OK || lumen_image_write_png(&images->images[0], out, 0) != LUMEN_OK) {
    fprintf(stderr, "error: %s\n", lumen_last_error());
    code = 1;
  } else {
    printf("%s (%ux%u)\n%s\n", out, images->images[0].width, images->images[0].height, images->images[0].parameters);
  }
  lumen_images_free(images);
  lumen_context_free(ctx);
  return code;
}
