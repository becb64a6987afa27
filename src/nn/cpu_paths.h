// Which CPU kernel paths the layers take, each switchable so `lumen bench`
// can measure it. No LibTorch here: the CLI's main sets them.
#pragma once

namespace lumen::nn {

// Linear layers through oneDNN. LibTorch 1.13 sends f32 linear layers to
// OpenBLAS (~190 GFLOP/s on 2 AVX-512 cores) while oneDNN's convolutions reach
// ~400: an [N,C] x [O,C]ᵀ product is a 1x1 convolution of a channels-last
// [1,C,N,1] image, a view of the same memory, so inference runs it as one
// (1.7-2x faster in f32, 0.9-1.3x in bf16, per layer shape). Results agree to float
// rounding. Off while autograd records (training keeps ATen's linear).
// On by default; `bench --no-onednn-linear` turns it off.
void set_onednn_linear(bool enabled);
bool onednn_linear_enabled();

// Products whose weight is the larger operand (f32 linear layers of few rows,
// convolutions with few output pixels) with the weight as oneDNN's image
// (nn/weight_as_image.h). On by default; `bench --no-weight-as-image` turns it off.
void set_weight_as_image(bool enabled);
bool weight_as_image_enabled();

// bf16 attention: scores and softmax input in bf16 (faster) or q and k
// upcast to f32 first (the scores in f32). On by default.
void set_bf16_attention_scores(bool enabled);
bool bf16_attention_scores();

// bf16 convolution weights pre-laid-out for oneDNN (nn/conv_prepack.h): faster
// at small feature maps, one more copy of every convolution weight in memory.
// Off by default; `lumen --prepack-conv` turns it on.
void set_conv_prepack(bool enabled);
bool conv_prepack_enabled();

// The VAE's inference on the CPU in channels-last layout (nn/vae.cpp): less
// peak memory at full resolution, the same speed. On by default;
// `lumen --vae-nchw` turns it off.
void set_vae_channels_last(bool enabled);
bool vae_channels_last_enabled();

// A 2× upsampler's 3×3 convolution as four 2×2 convolutions of the small map
// (nn/upsample_conv.h): 2.25× fewer multiply-adds, no upsampled copy. By
// default for bf16/f16 maps only: in f32 an SD1.5 512² generation was ~10%
// faster but peaked 0.32 GB higher (the same bytes alive at once; the
// allocator reused its blocks less well). `lumen --subpixel-upsample on|off`.
enum class SubpixelUpsample { Off, LowPrecision, Always };
void set_subpixel_upsample(SubpixelUpsample mode);
SubpixelUpsample subpixel_upsample_mode();

}  // namespace lumen::nn
