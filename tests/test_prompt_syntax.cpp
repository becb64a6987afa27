// The A1111 prompt-weight syntax and its limits. Torch-free: it also runs in
// the sanitized build of the parsers (fuzz/CMakeLists.txt).
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "error.h"
#include "prompt/prompt_parser.h"

namespace {

using lumen::Error;

// A1111's own examples (parse_prompt_attention's docstring).
TEST(PromptSyntax, A1111DocstringExamples) {
  auto parse = [](const std::string& prompt) {
    std::vector<std::pair<std::string, double>> got;
    for (const auto& p : lumen::parse_prompt_weights(prompt)) got.push_back({p.text, p.is_break ? -1 : p.weight});
    return got;
  };
  using Parts = std::vector<std::pair<std::string, double>>;
  auto expect = [&](const std::string& prompt, const Parts& want) {
    const Parts got = parse(prompt);
    ASSERT_EQ(got.size(), want.size()) << prompt;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].first, want[i].first) << prompt << " part " << i;
      EXPECT_NEAR(got[i].second, want[i].second, 1e-9) << prompt << " part " << i;
    }
  };
  expect("normal text", {{"normal text", 1.0}});
  expect("an (important) word", {{"an ", 1.0}, {"important", 1.1}, {" word", 1.0}});
  expect("(unbalanced", {{"unbalanced", 1.1}});
  expect("\\(literal\\]", {{"(literal]", 1.0}});
  expect("(unnecessary)(parens)", {{"unnecessaryparens", 1.1}});
  expect("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
         {{"a ", 1.0}, {"house", 1.573}, {" ", 1.1}, {"on", 1.0}, {" a ", 1.1}, {"hill", 0.55}, {", sun, ", 1.1},
          {"sky", 1.4641}, {".", 1.1}});
  // As Python's re.split: every BREAK separates two parts, empty ones too.
  expect("BREAK BREAK", {{"", 1.0}, {"BREAK", -1}, {"", 1.0}, {"BREAK", -1}, {"", 1.0}});
  expect("xBREAK BREAKy", {{"xBREAK BREAKy", 1.0}});
  expect("a (b:1.2) :", {{"a ", 1.0}, {"b", 1.2}, {" :", 1.0}});
}

// A prompt cannot exhaust the stack, time or numbers: the limits are clear errors
// and weights are clamped. (The regex parser recursed once per character:
// 30,000 characters overflowed the stack.)
TEST(PromptSyntax, LimitsAreClearErrorsAndWeightsAreClamped) {
  auto error_of = [](const std::string& prompt) -> std::string {
    try {
      lumen::parse_prompt_weights(prompt);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  std::string long_prompt;
  while (long_prompt.size() <= lumen::kMaxPromptBytes) long_prompt += "a red circle, ";
  EXPECT_NE(error_of(long_prompt).find("bytes long; at most 16384"), std::string::npos);
  EXPECT_NE(error_of(std::string(5000, '(') + "x").find("nest deeper than 32"), std::string::npos);
  EXPECT_EQ(error_of(std::string(32, '(') + "x"), "");
  // 32 levels of ×1.1 around a huge explicit weight: clamped, never inf.
  auto parts = lumen::parse_prompt_weights(std::string(31, '(') + "x:1" + std::string(400, '0') + ")");
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0].weight, lumen::kMaxPromptWeight);
  parts = lumen::parse_prompt_weights("(x:-99999)");
  EXPECT_EQ(parts[0].weight, -lumen::kMaxPromptWeight);
}

TEST(PromptSyntax, A1111Weights) {
  auto parts = lumen::parse_prompt_weights("a (red:1.5) [blue] ((big)) \\(x\\) BREAK dog");
  std::vector<std::pair<std::string, double>> got;
  for (const auto& p : parts) got.push_back({p.text, p.is_break ? -1 : p.weight});
  ASSERT_EQ(got.size(), 9u);
  EXPECT_EQ(got[0].first, "a ");
  EXPECT_DOUBLE_EQ(got[1].second, 1.5);
  EXPECT_EQ(got[1].first, "red");
  EXPECT_NEAR(got[3].second, 1 / 1.1, 1e-12);
  EXPECT_NEAR(got[5].second, 1.21, 1e-12);
  EXPECT_EQ(got[6].first, " (x)");
  EXPECT_EQ(got[7].second, -1);
  EXPECT_EQ(got[8].first, "dog");
}

}  // namespace
