// Lumen's public API in one include: load a model (diffusers folder or
// single-file checkpoint), generate with options and a progress callback,
// get images, write PNGs. See examples/txt2img_app.
#pragma once

#include "error.h"
#include "io/image_io.h"
#include "model/model_loader.h"
#include "pipeline/infotext.h"
#include "pipeline/pipeline.h"
#include "runtime.h"
