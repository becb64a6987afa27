#include "prompt/prompt_parser.h"

#include <algorithm>
#include <regex>

#include "tokenizer/clip_tokenizer.h"

namespace lumen {
namespace {

constexpr double kRoundMultiplier = 1.1;
constexpr double kSquareMultiplier = 1 / 1.1;
constexpr size_t kChunkTokens = 75;
constexpr size_t kCommaBacktrack = 20;

void multiply_from(std::vector<WeightedText>& res, size_t start, double m) {
  for (size_t i = start; i < res.size(); ++i) res[i].weight *= m;
}

}  // namespace

std::vector<WeightedText> parse_prompt_weights(const std::string& prompt) {
  static const std::regex attention(R"(\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:)");
  static const std::regex brk(R"(\s*\bBREAK\b\s*)");
  std::vector<WeightedText> res;
  std::vector<size_t> round, square;
  for (auto it = std::sregex_iterator(prompt.begin(), prompt.end(), attention); it != std::sregex_iterator(); ++it) {
    const std::string text = (*it)[0];
    const bool has_weight = (*it)[1].matched;
    if (text[0] == '\\') {
      res.push_back({text.substr(1), 1.0});
    } else if (text == "(") {
      round.push_back(res.size());
    } else if (text == "[") {
      square.push_back(res.size());
    } else if (has_weight && !round.empty()) {
      double w = 1.0;
      try {
        w = std::stod((*it)[1].str());
      } catch (const std::exception&) {
      }
      multiply_from(res, round.back(), w);
      round.pop_back();
    } else if (text == ")" && !round.empty()) {
      multiply_from(res, round.back(), kRoundMultiplier);
      round.pop_back();
    } else if (text == "]" && !square.empty()) {
      multiply_from(res, square.back(), kSquareMultiplier);
      square.pop_back();
    } else {
      auto parts = std::sregex_token_iterator(text.begin(), text.end(), brk, -1);
      bool first = true;
      for (; parts != std::sregex_token_iterator(); ++parts) {
        if (!first) res.push_back({"BREAK", -1, true});
        res.push_back({*parts, 1.0});
        first = false;
      }
      if (first) res.push_back({"", 1.0});  // the text was only "BREAK"
    }
  }
  for (auto p : round) multiply_from(res, p, kRoundMultiplier);
  for (auto p : square) multiply_from(res, p, kSquareMultiplier);
  if (res.empty()) res.push_back({"", 1.0});
  for (size_t i = 0; i + 1 < res.size();) {
    if (!res[i].is_break && !res[i + 1].is_break && res[i].weight == res[i + 1].weight) {
      res[i].text += res[i + 1].text;
      res.erase(res.begin() + static_cast<long>(i) + 1);
    } else {
      ++i;
    }
  }
  return res;
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
    chunk = TokenChunk{};
    last_comma = -1;
  };
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
