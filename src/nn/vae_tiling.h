// Decoding large latents tile by tile, so memory stays bounded by one tile's
// activations: diffusers' AutoencoderKL.tiled_decode (tiles of the VAE's
// sample size, a quarter overlapping, blended linearly across the overlap).
// Not exact: each tile normalises with its own GroupNorm statistics, as in the
// reference's tiled mode.
#pragma once
#include <torch/torch.h>

#include "nn/vae.h"

namespace lumen::nn {

struct VaeTiling {
  int64_t tile_size = 0;  // tile side in image pixels; 0: the VAE's sample size
  double overlap = 0.25;  // share of a tile that overlaps the next
};

// The tile side in latent pixels that `tiling` means for `vae` (its size over the VAE's factor).
int64_t tile_latent_size(const AutoencoderKLImpl& vae, const VaeTiling& tiling);

// Unscaled latents → image, as vae.decode; in one piece when the latents fit one tile.
torch::Tensor decode_tiled(AutoencoderKLImpl& vae, const torch::Tensor& latents, const VaeTiling& tiling = {});

}  // namespace lumen::nn
