// The CLIP tokenizer with both text cleanings (ftfy-style and basic) on any bytes.
#include "fuzz_common.h"
#include "tokenizer/clip_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const lumen::ClipTokenizer tok = lumen::ClipTokenizer::from_files(
      lumen::fuzz::source_asset("tokenizer/vocab.json"), lumen::fuzz::source_asset("tokenizer/merges.txt"));
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (auto cleaning : {lumen::TextCleaning::Ftfy, lumen::TextCleaning::Basic}) {
    lumen::fuzz::expect_clean([&] {
      const auto ids = tok.encode(text, cleaning);
      if (ids.size() < 2 || ids.front() != tok.bos_id() || ids.back() != tok.eos_id()) std::abort();
      tok.encode_padded(text, 77, tok.eos_id(), cleaning);
    });
  }
  return 0;
}
