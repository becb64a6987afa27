// Text normalisation in front of the CLIP BPE tokenizer, reproducing what
// transformers' slow CLIPTokenizer does with and without ftfy installed, so
// that token ids match the reference exactly without a Python runtime.
#pragma once
#include <string>

namespace lumen {

// ftfy.fix_text(text) with ftfy 6's default configuration: HTML entities
// (only while no '<' has been seen), mojibake repair, C1 controls, Latin
// ligatures, character width, curly quotes, line breaks, terminal escapes,
// control characters, NFC. Case is preserved.
std::string ftfy_fix_text(const std::string& utf8);

// What transformers' CLIPTokenizer feeds to its word regex when ftfy is
// installed: whitespace_clean(ftfy.fix_text(text)).lower(). (Unlike openai's
// simple_tokenizer, transformers does not html-unescape a second time.)
std::string clean_text_ftfy(const std::string& utf8);

// transformers' fallback when ftfy is missing:
// " ".join(BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text)):
// control-char removal, spaces around CJK ideographs, NFC, lower-case,
// whitespace split/join.
std::string clean_text_basic(const std::string& utf8);

}  // namespace lumen
