// A1111 prompt syntax: (word) ×1.1, [word] ÷1.1, (word:1.3), \( escapes, BREAK,
// and its chunking of long prompts into 75-token pieces. Torch-free.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace lumen {

class ClipTokenizer;

// Limits on what a prompt may ask for; past them the prompt is refused with
// a clear error (weights are clamped), so no prompt can exhaust time or memory.
constexpr size_t kMaxPromptBytes = 16384;
constexpr size_t kMaxPromptChunks = 32;   // of 75 tokens each (BREAK starts one)
constexpr size_t kMaxPromptNesting = 32;  // open ( and [ at once
constexpr double kMaxPromptWeight = 100;  // weights are clamped to ±this

struct WeightedText {
  std::string text;
  double weight = 1.0;
  bool is_break = false;  // BREAK: start a new 75-token chunk
};

// parse_prompt_attention as A1111 does it (runs of equal weight merged), by a
// linear scan: its regular expression recursed once per character.
std::vector<WeightedText> parse_prompt_weights(const std::string& prompt);

struct TokenChunk {
  std::vector<int64_t> ids;        // BOS + 75 tokens (padded) + EOS = 77
  std::vector<double> multipliers;  // one per id
};

// Tokenizes a weighted prompt into 77-id chunks, breaking at BREAK, at 75
// tokens, or at a comma within the last 20 tokens (A1111's backtrack).
// `plain` treats the prompt literally and truncates it to one chunk, exactly
// as the diffusers reference does.
std::vector<TokenChunk> chunk_prompt(const ClipTokenizer& tokenizer, const std::string& prompt, int64_t pad_id,
                                     bool plain);

}  // namespace lumen
