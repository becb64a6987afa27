#include "nn/vae_tiling.h"

#include <algorithm>

#include "error.h"

namespace lumen::nn {
namespace {

// Blends the first `extent` rows (dim 2) or columns (dim 3) of `b` from the
// last ones of `a`, the weight moving linearly from a to b.
void blend(const torch::Tensor& a, torch::Tensor& b, int64_t extent, int64_t dim) {
  extent = std::min({a.size(dim), b.size(dim), extent});
  for (int64_t i = 0; i < extent; ++i) {
    const double w = static_cast<double>(i) / static_cast<double>(extent);
    auto target = b.select(dim, i);
    target.copy_(a.select(dim, a.size(dim) - extent + i) * (1 - w) + target * w);
  }
}

}  // namespace

int64_t tile_latent_size(const AutoencoderKLImpl& vae, const VaeTiling& tiling) {
  return (tiling.tile_size > 0 ? tiling.tile_size : vae.config.sample_size) / vae.config.downsampling_factor();
}

torch::Tensor decode_tiled(AutoencoderKLImpl& vae, const torch::Tensor& z, const VaeTiling& tiling) {
  const int64_t tile = tile_latent_size(vae, tiling);
  if (tile < 1 || tiling.overlap < 0 || tiling.overlap >= 1) throw Error("vae tiling", "tile must be ≥ 1 and overlap in [0, 1)");
  if (z.dim() != 4) throw Error("vae", "latents must be [B,C,h,w]");
  if (z.size(2) <= tile && z.size(3) <= tile) return vae.decode(z);
  const int64_t factor = vae.config.downsampling_factor();
  const int64_t stride = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(tile) * (1 - tiling.overlap)));
  const int64_t tile_px = tile * factor;
  const int64_t blend_px = static_cast<int64_t>(static_cast<double>(tile_px) * tiling.overlap);
  const int64_t keep_px = tile_px - blend_px;

  std::vector<std::vector<torch::Tensor>> rows;
  for (int64_t i = 0; i < z.size(2); i += stride) {
    std::vector<torch::Tensor> row;
    for (int64_t j = 0; j < z.size(3); j += stride)
      row.push_back(vae.decode(z.narrow(2, i, std::min(tile, z.size(2) - i)).narrow(3, j, std::min(tile, z.size(3) - j))));
    rows.push_back(std::move(row));
  }
  std::vector<torch::Tensor> stitched_rows;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<torch::Tensor> kept;
    for (size_t j = 0; j < rows[i].size(); ++j) {
      auto t = rows[i][j];
      if (i > 0) blend(rows[i - 1][j], t, blend_px, 2);
      if (j > 0) blend(rows[i][j - 1], t, blend_px, 3);
      kept.push_back(t.narrow(2, 0, std::min(keep_px, t.size(2))).narrow(3, 0, std::min(keep_px, t.size(3))));
    }
    stitched_rows.push_back(torch::cat(kept, 3));
  }
  return torch::cat(stitched_rows, 2);
}

}  // namespace lumen::nn
