#include "pipeline/infotext.h"

#include <openssl/evp.h>

#include <cstdio>
#include <memory>
#include <sstream>

#include "error.h"
#include "io/mmap_file.h"
#include "samplers/a1111_names.h"

namespace lumen {

std::string format_infotext(const GenerationOptions& o, const std::string& prompt, const std::string& negative,
                            const InfotextFields& f) {
  std::ostringstream s;
  s << prompt << "\n";
  if (!negative.empty()) s << "Negative prompt: " << negative << "\n";
  s << "Steps: " << o.steps << ", Sampler: " << samplers::a1111_sampler_name(f.sampler) << ", CFG scale: " << o.cfg_scale << ", Seed: " << f.seed
    << ", Size: " << o.width << "x" << o.height;
  if (!f.model_hash.empty()) s << ", Model hash: " << f.model_hash;
  if (!f.model_name.empty()) s << ", Model: " << f.model_name;
  if (o.guidance_rescale > 0) s << ", CFG Rescale phi: " << o.guidance_rescale;
  if (o.encoding.clip_skip > 1) s << ", Clip skip: " << o.encoding.clip_skip;
  if (o.init_image.defined()) s << ", Denoising strength: " << o.strength;
  if (o.zero_terminal_snr.value_or(false)) s << ", Zero terminal SNR: True";
  if (o.timestep_spacing) s << ", Timestep spacing: " << *o.timestep_spacing;
  if (o.prediction_type) s << ", Prediction type: " << *o.prediction_type;
  s << ", Version: lumen 0.1.0";
  return s.str();
}

std::string short_file_hash(const std::string& path) {
  MappedFile file(path);
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  constexpr size_t kBlock = 64 << 20;
  if (!EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr)) throw Error(path, "sha256 unavailable");
  for (size_t off = 0; off < file.size(); off += kBlock) {
    const size_t n = std::min(kBlock, file.size() - off);
    EVP_DigestUpdate(ctx.get(), file.data() + off, n);
    file.release(off, n);
  }
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  std::string hex;
  char buf[3];
  for (unsigned int i = 0; i < 5 && i < length; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", digest[i]);
    hex += buf;
  }
  return hex;
}

}  // namespace lumen
