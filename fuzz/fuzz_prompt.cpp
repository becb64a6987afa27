// The A1111 prompt parser and its chunking into 77-token pieces.
#include <cmath>

#include "fuzz_common.h"
#include "prompt/prompt_parser.h"
#include "tokenizer/clip_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lumen::ClipTokenizer tok = lumen::ClipTokenizer::from_files(
      lumen::fuzz::source_asset("tokenizer/vocab.json"), lumen::fuzz::source_asset("tokenizer/merges.txt"));
  const std::string prompt(reinterpret_cast<const char*>(data), size);
  lumen::fuzz::expect_clean([&] {
    for (const auto& part : lumen::parse_prompt_weights(prompt))
      if (!part.is_break && !(std::fabs(part.weight) <= lumen::kMaxPromptWeight)) std::abort();  // clamped, finite
  });
  for (bool plain : {false, true}) {
    lumen::fuzz::expect_clean([&] {
      const auto chunks = lumen::chunk_prompt(tok, prompt, tok.eos_id(), plain);
      if (chunks.empty() || chunks.size() > lumen::kMaxPromptChunks) std::abort();
      for (const auto& c : chunks)
        if (c.ids.size() != 77 || c.multipliers.size() != 77) std::abort();
    });
  }
  return 0;
}
