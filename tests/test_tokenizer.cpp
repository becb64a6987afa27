// CLIP tokenizer against the golden reference (transformers 4.38 slow
// CLIPTokenizer, ftfy installed and not), plus loader error handling.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <tuple>

#include "error.h"
#include "tokenizer/clip_tokenizer.h"
#include "tokenizer/text_clean.h"

namespace fs = std::filesystem;
using lumen::ClipTokenizer;
using lumen::TextCleaning;
using Ids = std::vector<int64_t>;

namespace {

fs::path golden_dir() {
  const char* env = std::getenv("LUMEN_GOLDEN_DIR");
  return env ? fs::path(env) : fs::path("../shared/golden");
}

#define REQUIRE_GOLDEN()                                                                       \
  if (!fs::exists(golden_dir() / "tokenizer/clip_bpe/tokens.json"))                            \
  GTEST_SKIP() << "\n\n*** GOLDEN DATA NOT FOUND at " << golden_dir()                          \
               << " (set LUMEN_GOLDEN_DIR): tokenizer reference tests NOT RUN ***\n\n"

ClipTokenizer golden_tokenizer() {
  return ClipTokenizer::from_files((golden_dir() / "tokenizer/vocab.json").string(),
                                   (golden_dir() / "tokenizer/merges.txt").string());
}

nlohmann::json golden_prompts() {
  std::ifstream in(golden_dir() / "tokenizer/clip_bpe/tokens.json");
  return nlohmann::json::parse(in).at("prompts");
}

// Minimal safetensors reader for the int64 [rows, cols] io tensors.
std::vector<Ids> read_int64_rows(const fs::path& path, const std::string& name) {
  std::ifstream in(path, std::ios::binary);
  uint64_t header_size = 0;
  in.read(reinterpret_cast<char*>(&header_size), 8);
  std::string header(header_size, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_size));
  const nlohmann::json info = nlohmann::json::parse(header).at(name);
  EXPECT_EQ(info.at("dtype"), "I64");
  const size_t rows = info.at("shape")[0], cols = info.at("shape")[1];
  in.seekg(static_cast<std::streamoff>(8 + header_size + info.at("data_offsets")[0].get<uint64_t>()));
  std::vector<Ids> out(rows, Ids(cols));
  for (Ids& row : out) in.read(reinterpret_cast<char*>(row.data()), static_cast<std::streamsize>(cols * 8));
  return out;
}

// The reference's truncation/padding rule applied to unpadded ids.
Ids pad_rule(Ids ids, size_t length, int64_t pad) {
  if (ids.size() > length) {
    const int64_t eos = ids.back();
    ids.resize(length - 1);
    ids.push_back(eos);
  }
  ids.resize(length, pad);
  return ids;
}

std::string show(const Ids& ids) {
  std::string s;
  for (int64_t id : ids) s += std::to_string(id) + " ";
  return s;
}

fs::path write_temp(const std::string& name, const std::string& content) {
  const fs::path path = fs::path(testing::TempDir()) / name;
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

template <typename Fn>
void expect_error_naming(const fs::path& path, Fn fn) {
  try {
    fn();
    ADD_FAILURE() << "no lumen::Error for " << path;
  } catch (const lumen::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(ClipTokenizerGolden, EncodeTokenizeAndBasicCleaning) {
  REQUIRE_GOLDEN();
  const ClipTokenizer tok = golden_tokenizer();
  const nlohmann::json prompts = golden_prompts();
  int failures = 0;
  for (const auto& p : prompts) {
    const std::string prompt = p.at("prompt");
    const Ids ids = p.at("ids");
    std::vector<std::string> tokens = p.at("tokens");
    tokens = std::vector<std::string>(tokens.begin() + 1, tokens.end() - 1);
    const Ids basic_ids = p.contains("ids_noftfy") ? p.at("ids_noftfy").get<Ids>() : ids;

    const Ids got = tok.encode(prompt);
    const Ids got_basic = tok.encode(prompt, TextCleaning::Basic);
    const bool ok = got == ids && tok.tokenize(prompt) == tokens && got_basic == basic_ids;
    if (!ok) {
      ++failures;
      std::cout << "FAIL prompt " << nlohmann::json(prompt).dump() << "\n  expected " << show(ids) << "\n  got      "
                << show(got) << "\n  basic expected " << show(basic_ids) << "\n  basic got      " << show(got_basic)
                << "\n";
    }
  }
  EXPECT_EQ(failures, 0) << "of " << prompts.size() << " prompts";
}

TEST(ClipTokenizerGolden, PaddedIdsMatchReferenceRows) {
  REQUIRE_GOLDEN();
  ClipTokenizer tok = golden_tokenizer();
  ClipTokenizer tok2 = tok;  // SD2.x / SDXL tokenizer_2: pad token "!" is an added special token
  tok2.add_special_token("!");
  const int64_t pad_zero = tok.token_to_id("!").value();
  ASSERT_EQ(pad_zero, 0);

  const fs::path io = golden_dir() / "tokenizer/clip_bpe/io.safetensors";
  const auto pad_eos = read_int64_rows(io, "output_ids_max77_pad_eos");
  const auto pad_eos_basic = read_int64_rows(io, "output_ids_max77_pad_eos_noftfy");
  const auto zero = read_int64_rows(io, "output_ids_max77_pad_zero");
  const nlohmann::json prompts = golden_prompts();
  ASSERT_EQ(pad_eos.size(), prompts.size());
  int failures = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string prompt = prompts[i].at("prompt");
    const bool ok = tok.encode_padded(prompt, 77, tok.eos_id()) == pad_eos[i] &&
                    tok.encode_padded(prompt, 77, tok.eos_id(), TextCleaning::Basic) == pad_eos_basic[i] &&
                    tok2.encode_padded(prompt, 77, pad_zero) == zero[i];
    if (!ok) {
      ++failures;
      std::cout << "FAIL padded prompt " << nlohmann::json(prompt).dump() << "\n";
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(ClipTokenizerGolden, PaddingRuleForBothPadIds) {
  REQUIRE_GOLDEN();
  const ClipTokenizer tok = golden_tokenizer();
  for (const auto& p : golden_prompts()) {
    const std::string prompt = p.at("prompt");
    const Ids ids = p.at("ids");
    for (int64_t pad : {int64_t{49407}, int64_t{0}})
      for (int length : {77, 8})
        EXPECT_EQ(tok.encode_padded(prompt, length, pad), pad_rule(ids, length, pad)) << prompt;
  }
}

TEST(ClipTokenizerGolden, VocabBasics) {
  REQUIRE_GOLDEN();
  const ClipTokenizer tok = golden_tokenizer();
  EXPECT_EQ(tok.vocab_size(), 49408u);
  EXPECT_EQ(tok.bos_id(), 49406);
  EXPECT_EQ(tok.eos_id(), 49407);
  EXPECT_EQ(tok.token_to_id("!"), 0);
  EXPECT_EQ(tok.token_to_id("no such token"), std::nullopt);
  EXPECT_THROW(tok.encode_padded("a", 1, 0), lumen::Error);
}

// Strangers' prompts cannot grow the BPE cache without end, and the bound
// changes no result.
TEST(ClipTokenizerGolden, BpeCacheStaysBounded) {
  REQUIRE_GOLDEN();
  const ClipTokenizer tok = golden_tokenizer();
  const auto first = tok.encode("a photo of zqxjkv");
  std::string prompt;
  for (size_t i = 0; i < ClipTokenizer::kMaxCachedWords + 500; ++i) {
    std::string word;
    for (size_t n = i; word.size() < 4; n /= 26) word += static_cast<char>('a' + n % 26);  // distinct words
    prompt += word + " ";
    if (prompt.size() > 8000) {
      tok.encode(prompt);
      prompt.clear();
    }
  }
  tok.encode(prompt);
  EXPECT_LE(tok.cached_words(), ClipTokenizer::kMaxCachedWords);
  const size_t kept = tok.cached_words();
  tok.encode(std::string(1000, 'q') + " " + std::string(70, 'x'));  // words too long to keep
  EXPECT_EQ(tok.cached_words(), kept);
  EXPECT_EQ(tok.encode("a photo of zqxjkv"), first);
}

TEST(TextClean, FtfyFixes) {
  EXPECT_EQ(lumen::ftfy_fix_text("mojibake caf\u00c3\u00a9"), "mojibake caf\u00e9");
  EXPECT_EQ(lumen::ftfy_fix_text("\u00e2\u0153\u201d No problems"), "\u2714 No problems");
  EXPECT_EQ(lumen::ftfy_fix_text("This \u00e2\u20ac\u201d should be an em dash"), "This \u2014 should be an em dash");
  EXPECT_EQ(lumen::ftfy_fix_text("voil\u00c3 le travail"), "voil\u00e0 le travail");
  EXPECT_EQ(lumen::ftfy_fix_text("\uff2c\uff2f\uff35\uff24\u3000\uff2e\uff2f\uff29\uff33\uff25\uff33"), "LOUD NOISES");
  EXPECT_EQ(lumen::ftfy_fix_text("P&EACUTE;REZ &lt;3 &#x41;&#59;"), "P\u00c9REZ <3 A&#59;");
  EXPECT_EQ(lumen::ftfy_fix_text("<b>&amp;</b>"), "<b>&amp;</b>");  // looks like HTML: entities kept
  EXPECT_EQ(lumen::ftfy_fix_text("\ufb02u\ufb03e\ufb06 \u201cq\u201d"), "fluffiest \"q\"");
  EXPECT_EQ(lumen::ftfy_fix_text("a\r\nb\x1b[36mc\x01\u200d"), "a\nbc\u200d");
  // Legitimate accented text is left alone.
  EXPECT_EQ(lumen::ftfy_fix_text("CAF\u00c9\u2019S na\u00efve r\u00e9sum\u00e9"), "CAF\u00c9'S na\u00efve r\u00e9sum\u00e9");
}

TEST(TextClean, CleaningVariants) {
  EXPECT_EQ(lumen::clean_text_ftfy("  Hello\t\u00a0World \n"), "hello world");
  EXPECT_EQ(lumen::clean_text_basic("\u4e00\u53eaCAT\u200b!"), "\u4e00 \u53ea cat!");
}

TEST(ClipTokenizerErrors, MissingVocabFile) {
  const fs::path merges = write_temp("merges_ok.txt", "#version: 0.2\na b\n");
  const fs::path vocab = fs::path(testing::TempDir()) / "does_not_exist_vocab.json";
  expect_error_naming(vocab, [&] { ClipTokenizer::from_files(vocab.string(), merges.string()); });
}

TEST(ClipTokenizerErrors, MalformedVocabJson) {
  const fs::path merges = write_temp("merges_ok2.txt", "#version: 0.2\na b\n");
  const fs::path vocab = write_temp("bad_vocab.json", "{\"a\": 0, \"b\": ");
  expect_error_naming(vocab, [&] { ClipTokenizer::from_files(vocab.string(), merges.string()); });
  const fs::path no_specials = write_temp("vocab_no_specials.json", "{\"a\": 0}");
  expect_error_naming(no_specials, [&] { ClipTokenizer::from_files(no_specials.string(), merges.string()); });
}

// A 5-million-entry vocab took 7 s and 1 GB before it was refused; now its size refuses it.
TEST(ClipTokenizerErrors, OversizedFilesAreRefusedUnread) {
  const fs::path merges = write_temp("merges_ok3.txt", "#version: 0.2\na b\n");
  const fs::path ok_vocab = write_temp("vocab_ok2.json", "{\"a\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}");
  // Valid JSON and valid merges, only too large: the refusal can only be the size's.
  const fs::path vocab = write_temp("huge_vocab.json", "{\"a\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}" +
                                                           std::string(17u << 20, ' '));
  const fs::path huge_merges = write_temp("huge_merges.txt", "#version: 0.2\n" + std::string(17u << 20, '\n'));
  for (const auto& [v, m, named] : {std::tuple{vocab, merges, vocab}, std::tuple{ok_vocab, huge_merges, huge_merges}}) {
    try {
      ClipTokenizer::from_files(v.string(), m.string());
      ADD_FAILURE() << "no error for " << named;
    } catch (const lumen::Error& e) {
      EXPECT_NE(std::string(e.what()).find(named.string() + ": is 17 MB; a CLIP tokenizer file is at most 16 MB"),
                std::string::npos)
          << e.what();
    }
  }
  fs::remove(vocab);
  fs::remove(huge_merges);
}

TEST(ClipTokenizerErrors, MergesWithBadLine) {
  const fs::path vocab = write_temp("vocab_ok.json", "{\"a\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}");
  const fs::path merges = write_temp("bad_merges.txt", "#version: 0.2\na b\nc d e\n");
  expect_error_naming(merges, [&] { ClipTokenizer::from_files(vocab.string(), merges.string()); });
  const fs::path missing = fs::path(testing::TempDir()) / "no_merges.txt";
  expect_error_naming(missing, [&] { ClipTokenizer::from_files(vocab.string(), missing.string()); });
}
