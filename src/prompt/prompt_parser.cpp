#include "prompt/prompt_parser.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "error.h"

#include "tokenizer/clip_tokenizer.h"

namespace lumen {
namespace {

constexpr double kRoundMultiplier = 1.1;
constexpr double kSquareMultiplier = 1 / 1.1;
constexpr size_t kChunkTokens = 75;
constexpr size_t kCommaBacktrack = 20;

// Clamped at every step, so no nesting of huge factors can reach inf or NaN.
void multiply_from(std::vector<WeightedText>& res, size_t start, double m) {
  for (size_t i = start; i < res.size(); ++i)
    res[i].weight = std::clamp(res[i].weight * m, -kMaxPromptWeight, kMaxPromptWeight);
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }
bool is_word(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool is_special(char c) { return c == '\\' || c == '(' || c == ')' || c == '[' || c == ']' || c == ':'; }

// Length of A1111's weight token `:\s*([+-]?[.\d]+)\s*\)` at `at` (0 if none);
// `number` receives the digits.
size_t weight_token(const std::string& s, size_t at, std::string* number) {
  size_t i = at + 1;
  while (i < s.size() && is_space(s[i])) ++i;
  const size_t begin = i;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  const size_t digits = i;
  while (i < s.size() && (s[i] == '.' || std::isdigit(static_cast<unsigned char>(s[i])))) ++i;
  if (i == digits) return 0;
  *number = s.substr(begin, i - begin);
  while (i < s.size() && is_space(s[i])) ++i;
  return i < s.size() && s[i] == ')' ? i + 1 - at : 0;
}

// Appends `text` split at A1111's `\s*\bBREAK\b\s*` (a BREAK marker between parts).
void append_text(std::vector<WeightedText>& res, const std::string& text) {
  static const std::string kBreak = "BREAK";
  size_t from = 0;  // start of the current part
  for (size_t q = text.find(kBreak); q != std::string::npos; q = text.find(kBreak, q + 1)) {
    const size_t after = q + kBreak.size();
    if ((q > 0 && is_word(text[q - 1])) || (after < text.size() && is_word(text[after])) || q < from) continue;
    size_t cut = q;
    while (cut > from && is_space(text[cut - 1])) --cut;
    res.push_back({text.substr(from, cut - from), 1.0});
    res.push_back({"BREAK", -1, true});
    from = after;
    while (from < text.size() && is_space(text[from])) ++from;
  }
  res.push_back({text.substr(from), 1.0});
}

void check_length(const std::string& prompt) {
  if (prompt.size() > kMaxPromptBytes)
    throw Error("prompt", "is " + std::to_string(prompt.size()) + " bytes long; at most " +
                              std::to_string(kMaxPromptBytes));
}

}  // namespace

std::vector<WeightedText> parse_prompt_weights(const std::string& prompt) {
  check_length(prompt);
  std::vector<WeightedText> res;
  std::vector<size_t> round, square;
  for (size_t i = 0; i < prompt.size();) {
    const char c = prompt[i];
    std::string number;
    if (c == '\\') {  // \( \) \[ \] \\ are literal; a lone backslash is dropped
      const bool escapes = i + 1 < prompt.size() && std::string("()[]\\").find(prompt[i + 1]) != std::string::npos;
      res.push_back({escapes ? std::string(1, prompt[i + 1]) : std::string(), 1.0});
      i += escapes ? 2 : 1;
    } else if (c == '(' || c == '[') {
      (c == '(' ? round : square).push_back(res.size());
      if (round.size() + square.size() > kMaxPromptNesting)
        throw Error("prompt", "brackets nest deeper than " + std::to_string(kMaxPromptNesting));
      ++i;
    } else if (c == ':' && weight_token(prompt, i, &number) > 0) {
      const size_t length = weight_token(prompt, i, &number);
      if (round.empty()) {
        append_text(res, prompt.substr(i, length));
      } else {
        multiply_from(res, round.back(), std::strtod(number.c_str(), nullptr));
        round.pop_back();
      }
      i += length;
    } else if (c == ')' && !round.empty()) {
      multiply_from(res, round.back(), kRoundMultiplier);
      round.pop_back();
      ++i;
    } else if (c == ']' && !square.empty()) {
      multiply_from(res, square.back(), kSquareMultiplier);
      square.pop_back();
      ++i;
    } else if (c == ':' || c == ')' || c == ']') {
      append_text(res, std::string(1, c));
      ++i;
    } else {
      size_t end = i;
      while (end < prompt.size() && !is_special(prompt[end])) ++end;
      append_text(res, prompt.substr(i, end - i));
      i = end;
    }
  }
  for (auto p : round) multiply_from(res, p, kRoundMultiplier);
  for (auto p : square) multiply_from(res, p, kSquareMultiplier);
  if (res.empty()) res.push_back({"", 1.0});
  std::vector<WeightedText> merged;
  for (auto& part : res) {
    if (!merged.empty() && !part.is_break && !merged.back().is_break && merged.back().weight == part.weight)
      merged.back().text += part.text;
    else
      merged.push_back(std::move(part));
  }
  return merged;
}

std::vector<TokenChunk> chunk_prompt(const ClipTokenizer& tok, const std::string& prompt, int64_t pad_id,
                                     bool plain) {
  std::vector<TokenChunk> chunks;
  TokenChunk chunk;
  long last_comma = -1;
  const auto comma = tok.token_to_id(",</w>");
  auto next_chunk = [&]() {
    chunk.ids.resize(kChunkTokens, tok.eos_id());
    chunk.multipliers.resize(kChunkTokens, 1.0);
    chunk.ids.insert(chunk.ids.begin(), tok.bos_id());
    chunk.multipliers.insert(chunk.multipliers.begin(), 1.0);
    chunk.ids.push_back(tok.eos_id());
    chunk.multipliers.push_back(1.0);
    // Tokenizers with their own pad token (SD2's "!") pad after the first EOS.
    if (pad_id != tok.eos_id()) {
      auto first_eos = std::find(chunk.ids.begin(), chunk.ids.end(), tok.eos_id());
      std::fill(first_eos + 1, chunk.ids.end(), pad_id);
    }
    chunks.push_back(std::move(chunk));
    if (chunks.size() > kMaxPromptChunks)
      throw Error("prompt", "needs more than " + std::to_string(kMaxPromptChunks) + " chunks of " +
                                std::to_string(kChunkTokens) + " tokens; shorten it or use fewer BREAKs");
    chunk = TokenChunk{};
    last_comma = -1;
  };
  if (plain) check_length(prompt);
  std::vector<WeightedText> parts = plain ? std::vector<WeightedText>{{prompt, 1.0}} : parse_prompt_weights(prompt);
  for (const auto& part : parts) {
    if (part.is_break) {
      next_chunk();
      continue;
    }
    std::vector<int64_t> ids = tok.encode(part.text);
    for (size_t i = 1; i + 1 < ids.size(); ++i) {  // without BOS/EOS
      const int64_t id = ids[i];
      if (comma && id == *comma) {
        last_comma = static_cast<long>(chunk.ids.size());
      } else if (!plain && chunk.ids.size() == kChunkTokens && last_comma != -1 &&
                 chunk.ids.size() - static_cast<size_t>(last_comma) <= kCommaBacktrack) {
        // Move the words after the last comma to the next chunk.
        const size_t at = static_cast<size_t>(last_comma) + 1;
        std::vector<int64_t> moved_ids(chunk.ids.begin() + at, chunk.ids.end());
        std::vector<double> moved_mults(chunk.multipliers.begin() + at, chunk.multipliers.end());
        chunk.ids.resize(at);
        chunk.multipliers.resize(at);
        next_chunk();
        chunk.ids = std::move(moved_ids);
        chunk.multipliers = std::move(moved_mults);
      }
      if (chunk.ids.size() == kChunkTokens) {
        if (plain) break;  // the reference truncates to one chunk
        next_chunk();
      }
      chunk.ids.push_back(id);
      chunk.multipliers.push_back(part.weight);
    }
  }
  if (!chunk.ids.empty() || chunks.empty()) next_chunk();
  return chunks;
}

}  // namespace lumen
