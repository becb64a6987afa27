// CLIP's byte-level BPE tokenizer, equivalent to transformers' slow
// CLIPTokenizer (4.38): special tokens are split off the raw text, each
// remaining chunk is cleaned (ftfy or BasicTokenizer fallback), split by
// CLIP's word regex, mapped byte-wise to unicode and BPE-merged.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace lumen {

// Ftfy: the reference with ftfy installed; Basic: its BasicTokenizer fallback.
enum class TextCleaning { Ftfy, Basic };

class ClipTokenizer {
 public:
  // Throws lumen::Error naming the file on missing/unreadable/malformed vocab or merges.
  static ClipTokenizer from_files(const std::string& vocab_json_path, const std::string& merges_txt_path);

  // Registers a vocab token as an added special token, matched in the raw
  // text before cleaning. transformers does this for a pad token such as
  // SD2 / SDXL tokenizer_2's "!", so there "!!" becomes two "!" tokens.
  void add_special_token(const std::string& token);

  // BOS + tokens + EOS, no truncation or padding.
  std::vector<int64_t> encode(const std::string& utf8, TextCleaning cleaning = TextCleaning::Ftfy) const;
  // Token strings, e.g. {"a</w>", "photo</w>"} (no BOS/EOS).
  std::vector<std::string> tokenize(const std::string& utf8, TextCleaning cleaning = TextCleaning::Ftfy) const;
  // tokenizer(p, padding="max_length", max_length=L, truncation=True).input_ids:
  // BOS + first L-2 tokens + EOS, then pad_id up to L.
  std::vector<int64_t> encode_padded(const std::string& utf8, int max_length, int64_t pad_id,
                                     TextCleaning cleaning = TextCleaning::Ftfy) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  std::optional<int64_t> token_to_id(const std::string& token) const;
  size_t vocab_size() const { return vocab_.size(); }

  // The BPE cache is bounded: a server tokenizes strangers' prompts, and every
  // new word stayed (the tokenizer fuzzer's memory grew to 348 MB). Words
  // longer than kMaxCachedWordBytes are not kept; a full cache starts again.
  static constexpr size_t kMaxCachedWords = 20000;
  static constexpr size_t kMaxCachedWordBytes = 64;
  size_t cached_words() const;

 private:
  ClipTokenizer() = default;
  std::vector<std::string> bpe(const std::string& word) const;
  void tokenize_chunk(const std::string& text, TextCleaning cleaning, std::vector<std::string>& out) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<std::string, int> merge_ranks_;  // "first second" -> rank
  std::vector<std::string> special_tokens_;           // split off before cleaning
  int64_t bos_id_ = 0, eos_id_ = 0;

  struct BpeCache;  // word -> BPE pieces, shared by copies (same vocab and merges)
  std::shared_ptr<BpeCache> cache_;
};

}  // namespace lumen
