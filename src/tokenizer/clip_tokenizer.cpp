#include "tokenizer/clip_tokenizer.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "error.h"
#include "io/text_file.h"
#include "tokenizer/text_clean.h"

namespace lumen {

struct ClipTokenizer::BpeCache {
  std::mutex mutex;
  std::unordered_map<std::string, std::vector<std::string>> words;
};

namespace {

const char* const kBos = "<|startoftext|>";
const char* const kEos = "<|endoftext|>";
// transformers reads only this many merges (49152 - 256 bytes - 2 specials).
constexpr size_t kMaxMerges = 49152 - 256 - 2;

std::string encode_utf8(UChar32 c) {
  char buf[U8_MAX_LENGTH];
  int32_t n = 0;
  U8_APPEND_UNSAFE(buf, n, c);
  return std::string(buf, n);
}

// GPT-2's bytes_to_unicode(): printable bytes map to themselves, the rest to
// U+0100 upwards, so every byte is a visible vocab character (UTF-8 here).
const std::vector<std::string>& byte_symbols() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = encode_utf8(printable ? b : next++);
    }
    return t;
  }();
  return table;
}

std::vector<UChar32> decode_code_points(const std::string& utf8) {
  std::vector<UChar32> out;
  for (int32_t i = 0, n = static_cast<int32_t>(utf8.size()); i < n;) {
    UChar32 c;
    U8_NEXT(utf8.data(), i, n, c);
    out.push_back(c < 0 ? 0xFFFD : c);
  }
  return out;
}

bool is_letter(UChar32 c) { return U_GET_GC_MASK(c) & U_GC_L_MASK; }
bool is_number(UChar32 c) { return U_GET_GC_MASK(c) & U_GC_N_MASK; }

bool matches_at(const std::vector<UChar32>& s, size_t i, const char* literal) {
  for (; *literal; ++literal, ++i)
    if (i >= s.size() || s[i] != static_cast<unsigned char>(*literal)) return false;
  return true;
}

// Length of a contraction ('s 't 're 've 'm 'll 'd) at i; CLIP's regex is case-insensitive.
size_t contraction_length(const std::vector<UChar32>& s, size_t i) {
  if (s[i] != '\'' || i + 1 >= s.size()) return 0;
  auto folded = [&](size_t k) { return k < s.size() ? u_foldCase(s[k], U_FOLD_CASE_DEFAULT) : 0; };
  const UChar32 a = folded(i + 1), b = folded(i + 2);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// CLIP's word regex: <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|
// [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ ; whitespace between words is dropped.
std::vector<std::string> split_words(const std::string& text) {
  const std::vector<UChar32> s = decode_code_points(text);
  std::vector<std::string> words;
  size_t i = 0;
  while (i < s.size()) {
    size_t end = i;
    if (matches_at(s, i, kBos)) {
      end = i + std::char_traits<char>::length(kBos);
    } else if (matches_at(s, i, kEos)) {
      end = i + std::char_traits<char>::length(kEos);
    } else if (size_t n = contraction_length(s, i)) {
      end = i + n;
    } else if (is_letter(s[i])) {
      while (end < s.size() && is_letter(s[end])) ++end;
    } else if (is_number(s[i])) {
      end = i + 1;
    } else if (!u_isUWhiteSpace(s[i])) {
      auto other = [](UChar32 c) { return !u_isUWhiteSpace(c) && !is_letter(c) && !is_number(c); };
      while (end < s.size() && other(s[end])) ++end;
    }
    if (end == i) {
      ++i;  // whitespace
      continue;
    }
    std::string word;
    for (size_t k = i; k < end; ++k) word += encode_utf8(s[k]);
    words.push_back(word);
    i = end;
  }
  return words;
}

// Splits a word's UTF-8 into byte symbols, the last one marked end-of-word.
std::vector<std::string> initial_symbols(const std::string& word) {
  std::vector<std::string> symbols;
  for (unsigned char b : word) symbols.push_back(byte_symbols()[b]);
  symbols.back() += "</w>";
  return symbols;
}

// CLIP's files are ~1 MB (vocab.json) and ~0.5 MB (merges.txt); a stranger's
// much larger one is refused before it is parsed.
constexpr uintmax_t kMaxTokenizerFileBytes = 16u << 20;

void check_tokenizer_file_size(const std::string& path) {
  std::error_code ec;
  const uintmax_t bytes = std::filesystem::file_size(path, ec);
  if (!ec && bytes > kMaxTokenizerFileBytes)
    throw Error(path, "is " + std::to_string(bytes >> 20) + " MB; a CLIP tokenizer file is at most " +
                          std::to_string(kMaxTokenizerFileBytes >> 20) + " MB");
}

std::unordered_map<std::string, int64_t> load_vocab(const std::string& path) {
  check_tokenizer_file_size(path);
  nlohmann::json json;
  json = read_json_file(path);
  if (!json.is_object()) throw Error(path, "expected a JSON object mapping tokens to ids");
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(json.size());
  for (const auto& [token, id] : json.items()) {
    if (!id.is_number_integer()) throw Error(path, "id of token '" + token + "' is not an integer");
    vocab.emplace(token, id.get<int64_t>());
  }
  for (const char* special : {kBos, kEos})
    if (!vocab.count(special)) throw Error(path, std::string("missing special token ") + special);
  return vocab;
}

// merges.txt: a header line, then "first second" per line (as transformers,
// the first line is skipped unread and at most kMaxMerges lines are used).
std::unordered_map<std::string, int> load_merges(const std::string& path) {
  check_tokenizer_file_size(path);
  std::istringstream in(read_text_file(path));
  std::string line;
  if (!std::getline(in, line)) throw Error(path, "empty merges file");
  std::unordered_map<std::string, int> ranks;
  ranks.reserve(kMaxMerges);
  for (size_t line_no = 2; ranks.size() < kMaxMerges && std::getline(in, line); ++line_no) {
    std::istringstream fields(line);
    std::string first, second, extra;
    if (!(fields >> first)) continue;  // blank (trailing) line
    if (!(fields >> second) || (fields >> extra))
      throw Error(path, "line " + std::to_string(line_no) + ": expected two space-separated symbols");
    ranks.emplace(first + " " + second, static_cast<int>(ranks.size()));
  }
  return ranks;
}

}  // namespace

ClipTokenizer ClipTokenizer::from_files(const std::string& vocab_json_path, const std::string& merges_txt_path) {
  ClipTokenizer tok;
  tok.vocab_ = load_vocab(vocab_json_path);
  tok.merge_ranks_ = load_merges(merges_txt_path);
  tok.bos_id_ = tok.vocab_.at(kBos);
  tok.eos_id_ = tok.vocab_.at(kEos);
  tok.special_tokens_ = {kBos, kEos};
  tok.cache_ = std::make_shared<BpeCache>();
  return tok;
}

void ClipTokenizer::add_special_token(const std::string& token) {
  if (!vocab_.count(token)) throw Error("ClipTokenizer", "special token '" + token + "' is not in the vocab");
  for (const std::string& t : special_tokens_)
    if (t == token) return;
  special_tokens_.push_back(token);
}

std::optional<int64_t> ClipTokenizer::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

// Repeatedly merges the adjacent pair with the lowest merge rank (all its
// non-overlapping occurrences, left to right) until no pair is mergeable.
// Each pair's rank is kept beside it and looked up again only where a merge
// changed a neighbour: a long word costs O(n) per merge, not O(n) hash
// lookups of freshly built strings (a 4 KB word took ~1 s that way).
std::vector<std::string> ClipTokenizer::bpe(const std::string& word) const {
  if (word == kBos || word == kEos) return {word};  // pre-seeded in transformers' cache
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->words.find(word);
    if (it != cache_->words.end()) return it->second;
  }
  constexpr int kNoMerge = std::numeric_limits<int>::max();
  auto rank_of = [&](const std::string& first, const std::string& second) {
    auto it = merge_ranks_.find(first + " " + second);
    return it == merge_ranks_.end() ? kNoMerge : it->second;
  };
  std::vector<std::string> symbols = initial_symbols(word);
  std::vector<int> ranks;  // ranks[i]: the pair (symbols[i], symbols[i + 1])
  for (size_t i = 0; i + 1 < symbols.size(); ++i) ranks.push_back(rank_of(symbols[i], symbols[i + 1]));
  while (!ranks.empty()) {
    const auto best = std::min_element(ranks.begin(), ranks.end());
    const int best_rank = *best;
    if (best_rank == kNoMerge) break;
    const size_t at = static_cast<size_t>(best - ranks.begin());
    const std::string first = symbols[at], second = symbols[at + 1];
    std::vector<std::string> merged;
    std::vector<size_t> from;  // the old index of each kept symbol; npos for a merged one
    for (size_t i = 0; i < symbols.size(); ++i) {
      if (i + 1 < symbols.size() && ranks[i] == best_rank && symbols[i] == first && symbols[i + 1] == second) {
        merged.push_back(first + second);
        from.push_back(std::string::npos);
        ++i;
      } else {
        merged.push_back(std::move(symbols[i]));
        from.push_back(i);
      }
    }
    std::vector<int> merged_ranks(merged.size() - 1);
    for (size_t j = 0; j + 1 < merged.size(); ++j) {
      const bool untouched = from[j] != std::string::npos && from[j + 1] == from[j] + 1;
      merged_ranks[j] = untouched ? ranks[from[j]] : rank_of(merged[j], merged[j + 1]);
    }
    symbols = std::move(merged);
    ranks = std::move(merged_ranks);
  }
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (word.size() <= kMaxCachedWordBytes) {
    if (cache_->words.size() >= kMaxCachedWords) cache_->words.clear();
    cache_->words.emplace(word, symbols);
  }
  return symbols;
}

size_t ClipTokenizer::cached_words() const {
  std::lock_guard<std::mutex> lock(cache_->mutex);
  return cache_->words.size();
}

void ClipTokenizer::tokenize_chunk(const std::string& text, TextCleaning cleaning,
                                   std::vector<std::string>& out) const {
  const std::string clean = cleaning == TextCleaning::Ftfy ? clean_text_ftfy(text) : clean_text_basic(text);
  for (const std::string& word : split_words(clean)) {
    std::vector<std::string> pieces = bpe(word);
    out.insert(out.end(), pieces.begin(), pieces.end());
  }
}

// Special tokens are matched in the raw text first (earliest, then longest),
// and the text between them is tokenized independently.
std::vector<std::string> ClipTokenizer::tokenize(const std::string& utf8, TextCleaning cleaning) const {
  std::vector<std::string> tokens;
  size_t pos = 0;
  while (pos < utf8.size()) {
    size_t best_at = std::string::npos;
    const std::string* best = nullptr;
    for (const std::string& special : special_tokens_) {
      const size_t at = utf8.find(special, pos);
      if (at < best_at || (at == best_at && at != std::string::npos && special.size() > best->size())) {
        best_at = at;
        best = &special;
      }
    }
    const size_t chunk_end = best ? best_at : utf8.size();
    if (chunk_end > pos) tokenize_chunk(utf8.substr(pos, chunk_end - pos), cleaning, tokens);
    if (!best) break;
    tokens.push_back(*best);
    pos = best_at + best->size();
  }
  return tokens;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& utf8, TextCleaning cleaning) const {
  std::vector<int64_t> ids{bos_id_};
  for (const std::string& token : tokenize(utf8, cleaning)) ids.push_back(token_to_id(token).value_or(eos_id_));
  ids.push_back(eos_id_);
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode_padded(const std::string& utf8, int max_length, int64_t pad_id,
                                                  TextCleaning cleaning) const {
  if (max_length < 2) throw Error("ClipTokenizer", "max_length must be at least 2 (BOS and EOS)");
  std::vector<int64_t> ids = encode(utf8, cleaning);
  if (ids.size() > static_cast<size_t>(max_length)) {
    ids.resize(max_length - 1);
    ids.push_back(eos_id_);
  }
  ids.resize(max_length, pad_id);
  return ids;
}

}  // namespace lumen
