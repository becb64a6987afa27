// A1111-style "parameters" text for PNGs, so other tools read our settings.
#pragma once
#include <string>

#include "pipeline/pipeline.h"

namespace lumen {

struct InfotextFields {
  std::string sampler, model_name, model_hash;
  uint64_t seed = 0;
};

std::string format_infotext(const GenerationOptions& options, const std::string& prompt,
                            const std::string& negative_prompt, const InfotextFields& fields);

// sha256 of a file, first 10 hex digits (A1111's "Model hash").
std::string short_file_hash(const std::string& path);

}  // namespace lumen
