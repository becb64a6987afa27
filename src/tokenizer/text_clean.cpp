// ftfy 6 / transformers BasicTokenizer text cleaning on ICU. Each fixer mirrors
// one ftfy step, in ftfy's order, so hidden prompts behave like the reference.
#include "tokenizer/text_clean.h"

#include <unicode/normalizer2.h>
#include <unicode/regex.h>
#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/ucnv.h>
#include <unicode/unistr.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "error.h"

namespace lumen {
namespace {

using icu::UnicodeString;

// ---------------------------------------------------------------- helpers

void check_icu(UErrorCode status, const char* what) {
  if (U_FAILURE(status)) throw Error(std::string("ICU ") + what, u_errorName(status));
}

std::string to_utf8(const UnicodeString& s) {
  std::string out;
  s.toUTF8String(out);
  return out;
}

std::unique_ptr<icu::RegexPattern> compile(const std::string& pattern) {
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  std::unique_ptr<icu::RegexPattern> re(
      icu::RegexPattern::compile(UnicodeString::fromUTF8(pattern), 0, parse_error, status));
  check_icu(status, ("regex " + pattern.substr(0, 60)).c_str());
  return re;
}

bool regex_search(const icu::RegexPattern& re, const UnicodeString& text) {
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexMatcher> m(re.matcher(text, status));
  check_icu(status, "matcher");
  return m->find();
}

// Python's re.sub with a function replacement.
UnicodeString regex_sub(const icu::RegexPattern& re, const UnicodeString& text,
                        const std::function<UnicodeString(const UnicodeString&)>& fn) {
  UErrorCode status = U_ZERO_ERROR;
  std::unique_ptr<icu::RegexMatcher> m(re.matcher(text, status));
  check_icu(status, "matcher");
  UnicodeString out;
  int32_t last = 0;
  while (m->find()) {
    int32_t start = m->start(status), end = m->end(status);
    out.append(text, last, start - last);
    out.append(fn(text.tempSubStringBetween(start, end)));
    last = end;
  }
  out.append(text, last, text.length() - last);
  return out;
}

// Applies fn to every code point; fn returns the replacement (possibly empty).
UnicodeString map_chars(const UnicodeString& text, const std::function<UnicodeString(UChar32)>& fn) {
  UnicodeString out;
  for (int32_t i = 0; i < text.length(); i = text.moveIndex32(i, 1)) out.append(fn(text.char32At(i)));
  return out;
}

bool any_char(const UnicodeString& text, const std::function<bool(UChar32)>& pred) {
  for (int32_t i = 0; i < text.length(); i = text.moveIndex32(i, 1))
    if (pred(text.char32At(i))) return true;
  return false;
}

// Python's str.isspace(): Unicode White_Space plus the ASCII separators 1C..1F.
bool py_isspace(UChar32 c) { return u_isUWhiteSpace(c) || (c >= 0x1C && c <= 0x1F); }

UnicodeString normalize(const icu::Normalizer2* (*instance)(UErrorCode&), const UnicodeString& s) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* norm = instance(status);
  check_icu(status, "normalizer");
  UnicodeString out = norm->normalize(s, status);
  check_icu(status, "normalize");
  return out;
}

UnicodeString nfc(const UnicodeString& s) { return normalize(&icu::Normalizer2::getNFCInstance, s); }
UnicodeString nfkc(const UnicodeString& s) { return normalize(&icu::Normalizer2::getNFKCInstance, s); }

// Python's str.lower(): full, locale-independent case mapping (final sigma included).
UnicodeString py_lower(UnicodeString s) { return s.toLower(icu::Locale::getRoot()); }

// Byte strings are carried through ICU regexes as U+0000..U+00FF, one per byte.
UnicodeString bytes_as_latin1(const std::string& bytes) {
  UnicodeString out;
  for (unsigned char b : bytes) out.append(static_cast<UChar>(b));
  return out;
}

std::string latin1_as_bytes(const UnicodeString& s) {
  std::string out;
  for (int32_t i = 0; i < s.length(); ++i) out.push_back(static_cast<char>(s.charAt(i)));
  return out;
}

// Strict UTF-8 (Python's 'utf-8' codec): nullopt on any ill-formed sequence.
std::optional<UnicodeString> decode_utf8_strict(const std::string& bytes) {
  UErrorCode status = U_ZERO_ERROR;
  int32_t length = 0;
  u_strFromUTF8(nullptr, 0, &length, bytes.data(), static_cast<int32_t>(bytes.size()), &status);
  if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status)) return std::nullopt;
  status = U_ZERO_ERROR;
  UnicodeString out;
  UChar* buf = out.getBuffer(length);
  u_strFromUTF8(buf, length, &length, bytes.data(), static_cast<int32_t>(bytes.size()), &status);
  out.releaseBuffer(U_SUCCESS(status) ? length : 0);
  if (U_FAILURE(status)) return std::nullopt;
  return out;
}

// ------------------------------------------------------ single-byte codecs

// A single-byte encoding as ftfy uses it. "Sloppy" codecs decode bytes their
// standard leaves undefined as the Latin-1 character of the same value.
struct ByteCodec {
  std::string name;
  bool sloppy = false;
  std::array<UChar32, 256> decode{};  // -1: undefined byte
  std::unordered_map<UChar32, char> encode;

  // ASCII maps to itself, except 0x1A, which sloppy codecs reserve for U+FFFD.
  bool encodable(UChar32 c) const { return (c < 0x80 && c != 0x1A) || encode.count(c); }
  bool can_encode(const UnicodeString& text) const {
    return !any_char(text, [this](UChar32 c) { return !encodable(c); });
  }
  std::string encode_text(const UnicodeString& text) const {
    std::string out;
    for (int32_t i = 0; i < text.length(); i = text.moveIndex32(i, 1)) {
      const UChar32 c = text.char32At(i);
      out.push_back(c < 0x80 && c != 0x1A ? static_cast<char>(c) : encode.at(c));
    }
    return out;
  }
};

UChar32 icu_decode_byte(UConverter* conv, unsigned char byte) {
  UErrorCode status = U_ZERO_ERROR;
  ucnv_reset(conv);
  UChar out[4];
  const char in = static_cast<char>(byte);
  int32_t n = ucnv_toUChars(conv, out, 4, &in, 1, &status);
  if (U_FAILURE(status) || n != 1 || out[0] == 0xFFFD || out[0] == 0x1A) return -1;
  return out[0];
}

ByteCodec make_codec(const std::string& name, const char* icu_name, bool sloppy) {
  ByteCodec codec;
  codec.name = name;
  codec.sloppy = sloppy;
  UErrorCode status = U_ZERO_ERROR;
  UConverter* conv = icu_name ? ucnv_open(icu_name, &status) : nullptr;
  check_icu(status, icu_name ? icu_name : "latin-1");
  if (conv) {
    ucnv_setToUCallBack(conv, UCNV_TO_U_CALLBACK_STOP, nullptr, nullptr, nullptr, &status);
    check_icu(status, "converter callback");
  }
  for (int b = 0; b < 256; ++b) {
    UChar32 c = (b < 0x80 || !conv) ? b : icu_decode_byte(conv, static_cast<unsigned char>(b));
    if (c < 0 && sloppy) c = b;
    codec.decode[b] = c;
    if (b >= 0x80 && c >= 0) codec.encode.emplace(c, static_cast<char>(b));
  }
  // ftfy's sloppy codecs write U+FFFD as byte 1A; replace_lossy_sequences undoes it.
  if (sloppy) codec.encode.emplace(0xFFFD, '\x1A');
  if (!sloppy) codec.encode.emplace(0x1A, '\x1A');
  if (conv) ucnv_close(conv);
  return codec;
}

// ftfy's CHARMAP_ENCODINGS, in the order it tries them.
const std::vector<ByteCodec>& codecs() {
  static const std::vector<ByteCodec> all = {
      make_codec("latin-1", nullptr, false),
      make_codec("sloppy-windows-1252", "windows-1252", true),
      make_codec("sloppy-windows-1251", "windows-1251", true),
      make_codec("sloppy-windows-1250", "windows-1250", true),
      make_codec("sloppy-windows-1253", "windows-1253", true),
      make_codec("sloppy-windows-1254", "windows-1254", true),
      make_codec("sloppy-windows-1257", "windows-1257", true),
      make_codec("iso-8859-2", "ISO-8859-2", false),
      make_codec("macroman", "macintosh", false),
      make_codec("cp437", "IBM437", false),
  };
  return all;
}

const ByteCodec& codec(const std::string& name) {
  for (const ByteCodec& c : codecs())
    if (c.name == name) return c;
  throw Error("text_clean", "unknown codec " + name);
}

// ------------------------------------------------------ mojibake heuristic

// ftfy's MOJIBAKE_CATEGORIES (badness.py): the few hundred characters that
// UTF-8 mojibake is made of, grouped by how suspicious their neighbours are.
namespace cat {
const std::string common =
    "\\N{NO-BREAK SPACE}\\N{SOFT HYPHEN}\\N{MIDDLE DOT}\\N{ACUTE ACCENT}\\N{EN DASH}\\N{EM DASH}"
    "\\N{HORIZONTAL BAR}\\N{HORIZONTAL ELLIPSIS}\\N{RIGHT SINGLE QUOTATION MARK}";
const std::string c1 = "\\x{80}-\\x{9f}";
const std::string bad =
    "\\N{BROKEN BAR}\\N{CURRENCY SIGN}\\N{DIAERESIS}\\N{NOT SIGN}\\N{MACRON}\\N{CEDILLA}"
    "\\N{LATIN SMALL LETTER F WITH HOOK}\\N{MODIFIER LETTER CIRCUMFLEX ACCENT}\\N{CARON}\\N{BREVE}"
    "\\N{OGONEK}\\N{SMALL TILDE}\\N{DAGGER}\\N{DOUBLE DAGGER}\\N{PER MILLE SIGN}\\N{REVERSED NOT SIGN}"
    "\\N{LOZENGE}\\x{fffd}\\N{FEMININE ORDINAL INDICATOR}\\N{MASCULINE ORDINAL INDICATOR}";
const std::string law = "\\N{PILCROW SIGN}\\N{SECTION SIGN}";
const std::string currency =
    "\\N{CENT SIGN}\\N{POUND SIGN}\\N{YEN SIGN}\\N{PESETA SIGN}\\N{EURO SIGN}";
const std::string start_punct =
    "\\N{INVERTED EXCLAMATION MARK}\\N{LEFT-POINTING DOUBLE ANGLE QUOTATION MARK}"
    "\\N{INVERTED QUESTION MARK}\\N{COPYRIGHT SIGN}\\N{GREEK TONOS}\\N{GREEK DIALYTIKA TONOS}"
    "\\N{LEFT SINGLE QUOTATION MARK}\\N{SINGLE LOW-9 QUOTATION MARK}\\N{LEFT DOUBLE QUOTATION MARK}"
    "\\N{DOUBLE LOW-9 QUOTATION MARK}\\N{BULLET}\\N{SINGLE LEFT-POINTING ANGLE QUOTATION MARK}"
    "\\x{f8ff}";
const std::string end_punct =
    "\\N{REGISTERED SIGN}\\N{RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK}\\N{DOUBLE ACUTE ACCENT}"
    "\\N{RIGHT DOUBLE QUOTATION MARK}\\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}"
    "\\N{TRADE MARK SIGN}";
const std::string numeric =
    "\\N{SUPERSCRIPT TWO}\\N{SUPERSCRIPT THREE}\\N{SUPERSCRIPT ONE}\\N{PLUS-MINUS SIGN}"
    "\\N{VULGAR FRACTION ONE QUARTER}\\N{VULGAR FRACTION ONE HALF}\\N{VULGAR FRACTION THREE QUARTERS}"
    "\\N{MULTIPLICATION SIGN}\\N{MICRO SIGN}\\N{DIVISION SIGN}\\N{FRACTION SLASH}"
    "\\N{PARTIAL DIFFERENTIAL}\\N{INCREMENT}\\N{N-ARY PRODUCT}\\N{N-ARY SUMMATION}\\N{SQUARE ROOT}"
    "\\N{INFINITY}\\N{INTERSECTION}\\N{INTEGRAL}\\N{ALMOST EQUAL TO}\\N{NOT EQUAL TO}"
    "\\N{IDENTICAL TO}\\N{LESS-THAN OR EQUAL TO}\\N{GREATER-THAN OR EQUAL TO}\\N{NUMERO SIGN}";
// Letters used in emoticons (kaomoji), so allowed in odd-looking places.
const std::string kaomoji =
    "\\x{d2}-\\x{d6}\\x{d9}-\\x{dc}\\x{f2}-\\x{f6}\\x{f8}-\\x{fc}"
    "\\N{LATIN CAPITAL LETTER O WITH DOUBLE ACUTE}\\N{LATIN CAPITAL LETTER O WITH MACRON}"
    "\\N{LATIN CAPITAL LETTER U WITH MACRON}\\N{LATIN CAPITAL LETTER U WITH OGONEK}\\N{DEGREE SIGN}";
const std::string upper_accented =
    "\\x{c0}-\\x{d1}\\x{d8}\\x{dc}\\x{dd}\\x{102}\\x{100}\\x{104}\\x{106}\\x{10c}\\x{10e}\\x{110}"
    "\\x{118}\\x{11a}\\x{112}\\x{116}\\x{11e}\\x{122}\\x{130}\\x{12a}\\x{136}\\x{139}\\x{13d}"
    "\\x{141}\\x{13b}\\x{143}\\x{147}\\x{145}\\x{152}\\x{158}\\x{15a}\\x{15e}\\x{160}\\x{162}"
    "\\x{164}\\x{16e}\\x{170}\\x{178}\\x{179}\\x{17b}\\x{17d}\\x{490}";
const std::string lower_accented =
    "\\x{df}\\x{e0}-\\x{f1}\\x{103}\\x{105}\\x{101}\\x{107}\\x{10d}\\x{10f}\\x{111}\\x{119}"
    "\\x{11b}\\x{113}\\x{117}\\x{11f}\\x{123}\\x{12f}\\x{12b}\\x{137}\\x{13a}\\x{13e}\\x{142}"
    "\\x{13c}\\x{153}\\x{155}\\x{15b}\\x{15f}\\x{161}\\x{165}\\x{fc}\\x{17a}\\x{17c}\\x{17e}"
    "\\x{491}\\x{fb01}\\x{fb02}";
const std::string upper_common =
    "\\x{de}\\x{391}-\\x{3a9}\\x{386}\\x{388}\\x{389}\\x{38a}\\x{38c}\\x{38e}\\x{38f}\\x{3aa}"
    "\\x{3ab}\\x{401}-\\x{42f}";
const std::string lower_common = "\\x{3b1}-\\x{3c9}\\x{3ac}\\x{3ad}\\x{3ae}\\x{3af}\\x{3b0}\\x{430}-\\x{45f}";
const std::string box =
    "\\x{2502}\\x{250c}\\x{2510}\\x{2518}\\x{251c}\\x{2524}\\x{252c}\\x{253c}\\x{2550}-\\x{256c}"
    "\\x{2580}\\x{2584}\\x{2588}\\x{258c}\\x{2590}\\x{2591}\\x{2592}\\x{2593}";
}  // namespace cat

std::string set_of(std::initializer_list<std::string> parts) {
  std::string s = "[";
  for (const std::string& p : parts) s += p;
  return s + "]";
}

// ftfy's BADNESS_RE: unlikely juxtapositions of the categories above, plus
// specific sequences typical of Windows-125x / MacRoman mojibake.
const icu::RegexPattern& badness_re() {
  using namespace cat;
  static const std::unique_ptr<icu::RegexPattern> re = compile(
      set_of({c1}) + "|" +
      set_of({bad, lower_accented, upper_accented, box, start_punct, end_punct, currency, numeric, law}) + set_of({bad}) + "|" +
      "[a-zA-Z]" + set_of({lower_common, upper_common}) + set_of({bad}) + "|" +
      set_of({bad}) + set_of({lower_accented, upper_accented, box, start_punct, end_punct, currency, numeric, law}) + "|" +
      set_of({lower_accented, lower_common, box, end_punct, currency, numeric}) + set_of({upper_accented}) + "|" +
      set_of({box, end_punct, currency, numeric}) + set_of({lower_accented}) + "|" +
      set_of({lower_accented, box, end_punct}) + set_of({currency}) + "|" +
      "\\s" + set_of({upper_accented}) + set_of({currency}) + "|" +
      set_of({upper_accented, box}) + set_of({numeric, law}) + "|" +
      set_of({lower_accented, upper_accented, box, currency, end_punct}) + set_of({start_punct}) + set_of({numeric}) + "|" +
      set_of({lower_accented, upper_accented, currency, numeric, box, law}) + set_of({end_punct}) + set_of({start_punct}) + "|" +
      set_of({currency, numeric, box}) + set_of({start_punct}) + "|" +
      "[a-z]" + set_of({upper_accented}) + set_of({start_punct, currency}) + "|" +
      set_of({box}) + set_of({kaomoji}) + "|" +
      set_of({lower_accented, upper_accented, currency, numeric, start_punct, end_punct, law}) + set_of({box}) + "|" +
      set_of({box}) + set_of({end_punct}) + "|" +
      set_of({lower_accented, upper_accented}) + set_of({start_punct, end_punct}) + "\\w|" +
      "[\\x{152}\\x{153}][^A-Za-z]|" +                      // the ligature oe not before a Latin letter
      set_of({upper_accented}) + "\\x{b0}|" +               // degree sign after a capital
      "[\\x{c2}\\x{c3}\\x{ce}\\x{d0}][\\x{20ac}\\x{153}\\x{160}\\x{161}\\x{a2}\\x{a3}\\x{178}\\x{17e}"
      "\\x{a0}\\x{ad}\\x{ae}\\x{a9}\\x{b0}\\x{b7}\\x{bb}" + start_punct + end_punct + "\\x{2013}\\x{2014}\\x{b4}]|" +
      "\\x{d7}[\\x{b2}\\x{b3}]|" +
      // Arabic in Windows-1252 needs the 'common' characters, so four are required.
      "[\\x{d8}\\x{d9}]" + set_of({common, currency, bad, numeric, start_punct, "\\x{178}\\x{160}\\x{ae}\\x{b0}\\x{b5}\\x{bb}"}) +
      "[\\x{d8}\\x{d9}]" + set_of({common, currency, bad, numeric, start_punct, "\\x{178}\\x{160}\\x{ae}\\x{b0}\\x{b5}\\x{bb}"}) + "|" +
      "\\x{e0}[\\x{b2}\\x{b5}\\x{b9}\\x{bc}\\x{bd}\\x{be}]|" +  // South Asian scripts
      // MacRoman
      "\\x{221a}[\\x{b1}\\x{2202}\\x{2020}\\x{2260}\\x{ae}\\x{2122}\\x{b4}\\x{2264}\\x{2265}\\x{a5}\\x{b5}\\x{f8}]|" +
      "\\x{2248}[\\x{b0}\\x{a2}]|" +
      "\\x{201a}\\x{c4}[\\x{ec}\\x{ee}\\x{ef}\\x{f2}\\x{f4}\\x{fa}\\x{f9}\\x{fb}\\x{2020}\\x{b0}\\x{a2}\\x{3c0}]|" +
      "\\x{201a}[\\x{e2}\\x{f3}][\\x{e0}\\x{e4}\\x{b0}\\x{ea}]|" +
      // Windows-1251
      "\\x{432}\\x{402}|" +
      "[\\x{412}\\x{413}\\x{420}\\x{421}]" + set_of({c1, bad, start_punct, end_punct, currency, "\\x{b0}\\x{b5}"}) +
      "[\\x{412}\\x{413}\\x{420}\\x{421}]|" +
      "\\x{413}\\x{45e}\\x{412}\\x{402}\\x{412}.[A-Za-z\\x{20}]|" +
      // Windows-1252 encodings of a-grave, a-acute and NBSP itself
      "\\x{c3}[\\x{a0}\\x{a1}]|" +
      "[a-z]\\s?[\\x{c3}\\x{c2}]\\x{20}|" +
      "^[\\x{c3}\\x{c2}]\\x{20}|" +
      "[a-z.,?!" + end_punct + "]\\x{c2}[\\x{20}" + start_punct + end_punct + "]|" +
      // Windows-1253
      "\\x{3b2}\\x{20ac}[\\x{2122}\\x{a0}\\x{386}\\x{ad}\\x{ae}\\x{b0}]|" +
      "[\\x{392}\\x{393}\\x{39e}\\x{39f}]" + set_of({c1, bad, start_punct, end_punct, currency, "\\x{b0}"}) +
      "[\\x{392}\\x{393}\\x{39e}\\x{39f}]|" +
      // Windows-1257
      "\\x{101}\\x{20ac}");
  return *re;
}

bool is_bad(const UnicodeString& text) { return regex_search(badness_re(), text); }

// ------------------------------------------------------ encoding repair

// A regex set of `chars` (as \x{..} escapes) plus the raw set syntax `extra`.
std::string escaped_set(const std::vector<UChar32>& chars, const std::string& extra) {
  std::string s = "[" + extra;
  for (UChar32 c : chars) {
    char escape[16];
    std::snprintf(escape, sizeof escape, "\\x{%x}", static_cast<unsigned>(c));
    s += escape;
  }
  return s + "]";
}

// Characters that bytes [lo, hi] decode to in the Latin-like codecs whose
// mojibake ftfy looks for inside otherwise-correct text (chardata.UTF8_CLUES).
std::vector<UChar32> clue_chars(std::initializer_list<std::pair<int, int>> ranges) {
  std::vector<UChar32> out;
  for (const char* name : {"latin-1", "sloppy-windows-1252", "sloppy-windows-1250", "sloppy-windows-1251",
                           "sloppy-windows-1253", "sloppy-windows-1254", "sloppy-windows-1257"})
    for (auto [lo, hi] : ranges)
      for (int b = lo; b <= hi; ++b) out.push_back(codec(name).decode[b]);
  return out;
}

// ftfy's UTF8_DETECTOR_RE: runs of what look like UTF-8 sequences decoded as
// a single-byte codec, not preceded by a character that would continue one.
const icu::RegexPattern& utf8_detector_re() {
  static const std::unique_ptr<icu::RegexPattern> re = [] {
    std::vector<UChar32> cont = clue_chars({{0x80, 0xBF}});
    const std::string continuation = escaped_set(cont, "\\x{20}\\x{80}-\\x{bf}");
    // Strict continuations exclude characters that often stand for themselves.
    const std::u32string loose = U"\u2013\u2014\u2015\u2018\u2019\u201a\u201c\u201d\u201e\u2022\u2026";
    std::vector<UChar32> strict;
    for (UChar32 c : cont)
      if (loose.find(static_cast<char32_t>(c)) == std::u32string::npos) strict.push_back(c);
    const std::string first2 = escaped_set(clue_chars({{0xC2, 0xDF}}), "");
    const std::string first3 = escaped_set(clue_chars({{0xE0, 0xEF}}), "");
    const std::string first4 = escaped_set(clue_chars({{0xF0, 0xF0}, {0xF3, 0xF3}}), "");
    return compile("(?<!" + escaped_set(strict, "\\x{80}-\\x{bf}") + ")(?:" + first2 + continuation + "|" +
                   first3 + continuation + "{2}|" + first4 + continuation + "{3})+");
  }();
  return *re;
}

// UTF-8 sequences whose 0xA0 byte some program turned into a space.
const icu::RegexPattern& altered_utf8_re() {
  static const std::unique_ptr<icu::RegexPattern> re = compile(
      "[\\x{c2}\\x{c3}\\x{c5}\\x{ce}\\x{d0}\\x{d9}]\\x{20}"
      "|[\\x{e2}\\x{e3}]\\x{20}[\\x{80}-\\x{84}\\x{86}-\\x{9f}\\x{a1}-\\x{bf}]"
      "|[\\x{e0}-\\x{e3}][\\x{80}-\\x{84}\\x{86}-\\x{9f}\\x{a1}-\\x{bf}]\\x{20}"
      "|\\x{f0}\\x{20}[\\x{80}-\\x{bf}][\\x{80}-\\x{bf}]"
      "|\\x{f0}[\\x{80}-\\x{bf}]\\x{20}[\\x{80}-\\x{bf}]"
      "|\\x{f0}[\\x{80}-\\x{bf}][\\x{80}-\\x{bf}]\\x{20}");
  return *re;
}

// "Ã " standing alone is almost always "à " (as in "à la"), except before the
// Portuguese contractions "às", "àquele", ...
const icu::RegexPattern& a_grave_word_re() {
  static const std::unique_ptr<icu::RegexPattern> re =
      compile("\\x{c3}\\x{20}(?!\\x{20}|quele|quela|quilo|s\\x{20})");
  return *re;
}

// UTF-8 sequences some of whose bytes a sloppy codec replaced by 0x1A.
const icu::RegexPattern& lossy_utf8_re() {
  static const std::unique_ptr<icu::RegexPattern> re = compile(
      "[\\x{c2}-\\x{df}]\\x{1a}"
      "|[\\x{c2}-\\x{c3}]\\?"
      "|\\x{ed}[\\x{a0}-\\x{af}][\\x{1a}?]\\x{ed}[\\x{b0}-\\x{bf}][\\x{1a}?\\x{80}-\\x{bf}]"
      "|\\x{ed}[\\x{a0}-\\x{af}][\\x{1a}?\\x{80}-\\x{bf}]\\x{ed}[\\x{b0}-\\x{bf}][\\x{1a}?]"
      "|[\\x{e0}-\\x{ef}][\\x{1a}?][\\x{1a}\\x{80}-\\x{bf}]"
      "|[\\x{e0}-\\x{ef}][\\x{1a}\\x{80}-\\x{bf}][\\x{1a}?]"
      "|[\\x{f0}-\\x{f4}][\\x{1a}?][\\x{1a}\\x{80}-\\x{bf}][\\x{1a}\\x{80}-\\x{bf}]"
      "|[\\x{f0}-\\x{f4}][\\x{1a}\\x{80}-\\x{bf}][\\x{1a}?][\\x{1a}\\x{80}-\\x{bf}]"
      "|[\\x{f0}-\\x{f4}][\\x{1a}\\x{80}-\\x{bf}][\\x{1a}\\x{80}-\\x{bf}][\\x{1a}?]"
      "|\\x{1a}");
  return *re;
}

std::string restore_byte_a0(const std::string& bytes) {
  UnicodeString s = bytes_as_latin1(bytes);
  s = regex_sub(a_grave_word_re(), s, [](const UnicodeString&) { return UnicodeString(u"\u00c3\u00a0 "); });
  s = regex_sub(altered_utf8_re(), s, [](const UnicodeString& m) {
    UnicodeString r(m);
    return r.findAndReplace(u" ", u"\u00a0");
  });
  return latin1_as_bytes(s);
}

std::string replace_lossy_sequences(const std::string& bytes) {
  UnicodeString s = regex_sub(lossy_utf8_re(), bytes_as_latin1(bytes),
                              [](const UnicodeString&) { return UnicodeString(u"\u00ef\u00bf\u00bd"); });
  return latin1_as_bytes(s);
}

// Text re-encoded with a codec and read back as UTF-8, if that works.
std::optional<UnicodeString> reinterpret_as_utf8(const UnicodeString& text, const ByteCodec& c) {
  std::string bytes = c.encode_text(text);
  if (c.name != "macroman" && regex_search(altered_utf8_re(), bytes_as_latin1(bytes)))
    bytes = restore_byte_a0(bytes);
  if (c.sloppy) bytes = replace_lossy_sequences(bytes);
  return decode_utf8_strict(bytes);
}

bool is_c1(UChar32 c) { return c >= 0x80 && c <= 0x9F; }

UnicodeString fix_c1_controls(const UnicodeString& text) {
  const ByteCodec& cp1252 = codec("sloppy-windows-1252");
  return map_chars(text, [&](UChar32 c) { return UnicodeString(is_c1(c) ? cp1252.decode[c] : c); });
}

UnicodeString fix_encoding(const UnicodeString& text);

UnicodeString decode_inconsistent_utf8(const UnicodeString& text) {
  const int32_t length = text.countChar32();
  return regex_sub(utf8_detector_re(), text, [&](const UnicodeString& m) {
    return m.countChar32() < length && is_bad(m) ? fix_encoding(m) : m;
  });
}

// One step of ftfy's fix_encoding; returns the text unchanged when done.
UnicodeString fix_encoding_step(const UnicodeString& text) {
  if (!any_char(text, [](UChar32 c) { return c >= 0x80; }) || !is_bad(text)) return text;
  bool latin1_possible = false, cp1252_possible = false;
  for (const ByteCodec& c : codecs()) {
    if (!c.can_encode(text)) continue;
    latin1_possible |= c.name == "latin-1";
    cp1252_possible |= c.name == "sloppy-windows-1252";
    if (auto fixed = reinterpret_as_utf8(text, c)) return *fixed;
  }
  if (regex_search(utf8_detector_re(), text)) {
    UnicodeString fixed = decode_inconsistent_utf8(text);
    if (fixed != text) return fixed;
  }
  if (latin1_possible) {
    if (cp1252_possible) return text;
    // C1 controls that strict Windows-1252 can decode: that is what was meant.
    const bool strict_ok = !any_char(text, [](UChar32 c) {
      return c == 0x81 || c == 0x8D || c == 0x8F || c == 0x90 || c == 0x9D;
    });
    if (strict_ok) {
      UnicodeString fixed = fix_c1_controls(text);
      if (fixed != text) return fixed;
    }
  }
  if (any_char(text, is_c1)) return fix_c1_controls(text);
  return text;
}

UnicodeString fix_encoding(const UnicodeString& text) {
  UnicodeString current = text;
  for (;;) {
    UnicodeString next = fix_encoding_step(current);
    if (next == current) return current;
    current = next;
  }
}

// ------------------------------------------------------ HTML entities

// The HTML 4 named entities (plus &apos;) that ftfy decodes when they end in
// ';', including its upper-cased variants such as &EACUTE; -> É.
const std::unordered_map<std::string, std::u32string>& html_entities() {
  static const std::unordered_map<std::string, std::u32string> table = {
    {"AACUTE", U"\u00C1"}, {"ACIRC", U"\u00C2"}, {"ACUTE", U"\u00B4"}, {"AELIG", U"\u00C6"},
    {"AElig", U"\u00C6"}, {"AGRAVE", U"\u00C0"}, {"ALEFSYM", U"\u2135"}, {"ALPHA", U"\u0391"},
    {"AND", U"\u2227"}, {"ANG", U"\u2220"}, {"APOS", U"'"}, {"ARING", U"\u00C5"},
    {"ASYMP", U"\u2248"}, {"ATILDE", U"\u00C3"}, {"AUML", U"\u00C4"}, {"Aacute", U"\u00C1"},
    {"Acirc", U"\u00C2"}, {"Agrave", U"\u00C0"}, {"Alpha", U"\u0391"}, {"Aring", U"\u00C5"},
    {"Atilde", U"\u00C3"}, {"Auml", U"\u00C4"}, {"BDQUO", U"\u201E"}, {"BETA", U"\u0392"},
    {"BRVBAR", U"\u00A6"}, {"BULL", U"\u2022"}, {"Beta", U"\u0392"}, {"CAP", U"\u2229"},
    {"CCEDIL", U"\u00C7"}, {"CEDIL", U"\u00B8"}, {"CENT", U"\u00A2"}, {"CHI", U"\u03A7"},
    {"CIRC", U"\u02C6"}, {"CLUBS", U"\u2663"}, {"CONG", U"\u2245"}, {"CRARR", U"\u21B5"},
    {"CUP", U"\u222A"}, {"CURREN", U"\u00A4"}, {"Ccedil", U"\u00C7"}, {"Chi", U"\u03A7"},
    {"DAGGER", U"\u2020"}, {"DARR", U"\u2193"}, {"DEG", U"\u00B0"}, {"DELTA", U"\u0394"},
    {"DIAMS", U"\u2666"}, {"DIVIDE", U"\u00F7"}, {"Dagger", U"\u2021"}, {"Delta", U"\u0394"},
    {"EACUTE", U"\u00C9"}, {"ECIRC", U"\u00CA"}, {"EGRAVE", U"\u00C8"}, {"EMPTY", U"\u2205"},
    {"EMSP", U"\u2003"}, {"ENSP", U"\u2002"}, {"EPSILON", U"\u0395"}, {"EQUIV", U"\u2261"},
    {"ETA", U"\u0397"}, {"ETH", U"\u00D0"}, {"EUML", U"\u00CB"}, {"EURO", U"\u20AC"},
    {"EXIST", U"\u2203"}, {"Eacute", U"\u00C9"}, {"Ecirc", U"\u00CA"}, {"Egrave", U"\u00C8"},
    {"Epsilon", U"\u0395"}, {"Eta", U"\u0397"}, {"Euml", U"\u00CB"}, {"FNOF", U"\u0191"},
    {"FORALL", U"\u2200"}, {"FRAC12", U"\u00BD"}, {"FRAC14", U"\u00BC"}, {"FRAC34", U"\u00BE"},
    {"FRASL", U"\u2044"}, {"GAMMA", U"\u0393"}, {"GE", U"\u2265"}, {"Gamma", U"\u0393"},
    {"HARR", U"\u2194"}, {"HEARTS", U"\u2665"}, {"HELLIP", U"\u2026"}, {"IACUTE", U"\u00CD"},
    {"ICIRC", U"\u00CE"}, {"IEXCL", U"\u00A1"}, {"IGRAVE", U"\u00CC"}, {"IMAGE", U"\u2111"},
    {"INFIN", U"\u221E"}, {"INT", U"\u222B"}, {"IOTA", U"\u0399"}, {"IQUEST", U"\u00BF"},
    {"ISIN", U"\u2208"}, {"IUML", U"\u00CF"}, {"Iacute", U"\u00CD"}, {"Icirc", U"\u00CE"},
    {"Igrave", U"\u00CC"}, {"Iota", U"\u0399"}, {"Iuml", U"\u00CF"}, {"KAPPA", U"\u039A"},
    {"Kappa", U"\u039A"}, {"LAMBDA", U"\u039B"}, {"LANG", U"\u27E8"}, {"LAQUO", U"\u00AB"},
    {"LARR", U"\u2190"}, {"LCEIL", U"\u2308"}, {"LDQUO", U"\u201C"}, {"LE", U"\u2264"},
    {"LFLOOR", U"\u230A"}, {"LOWAST", U"\u2217"}, {"LOZ", U"\u25CA"}, {"LRM", U"\u200E"},
    {"LSAQUO", U"\u2039"}, {"LSQUO", U"\u2018"}, {"Lambda", U"\u039B"}, {"MACR", U"\u00AF"},
    {"MDASH", U"\u2014"}, {"MICRO", U"\u039C"}, {"MIDDOT", U"\u00B7"}, {"MINUS", U"\u2212"},
    {"MU", U"\u039C"}, {"Mu", U"\u039C"}, {"NABLA", U"\u2207"}, {"NBSP", U"\u00A0"},
    {"NDASH", U"\u2013"}, {"NE", U"\u2260"}, {"NI", U"\u220B"}, {"NOT", U"\u00AC"},
    {"NOTIN", U"\u2209"}, {"NSUB", U"\u2284"}, {"NTILDE", U"\u00D1"}, {"NU", U"\u039D"},
    {"Ntilde", U"\u00D1"}, {"Nu", U"\u039D"}, {"OACUTE", U"\u00D3"}, {"OCIRC", U"\u00D4"},
    {"OELIG", U"\u0152"}, {"OElig", U"\u0152"}, {"OGRAVE", U"\u00D2"}, {"OLINE", U"\u203E"},
    {"OMEGA", U"\u03A9"}, {"OMICRON", U"\u039F"}, {"OPLUS", U"\u2295"}, {"OR", U"\u2228"},
    {"ORDF", U"\u00AA"}, {"ORDM", U"\u00BA"}, {"OSLASH", U"\u00D8"}, {"OTILDE", U"\u00D5"},
    {"OTIMES", U"\u2297"}, {"OUML", U"\u00D6"}, {"Oacute", U"\u00D3"}, {"Ocirc", U"\u00D4"},
    {"Ograve", U"\u00D2"}, {"Omega", U"\u03A9"}, {"Omicron", U"\u039F"}, {"Oslash", U"\u00D8"},
    {"Otilde", U"\u00D5"}, {"Ouml", U"\u00D6"}, {"PARA", U"\u00B6"}, {"PART", U"\u2202"},
    {"PERMIL", U"\u2030"}, {"PERP", U"\u22A5"}, {"PHI", U"\u03A6"}, {"PI", U"\u03A0"},
    {"PIV", U"\u03A0"}, {"PLUSMN", U"\u00B1"}, {"POUND", U"\u00A3"}, {"PRIME", U"\u2032"},
    {"PROD", U"\u220F"}, {"PROP", U"\u221D"}, {"PSI", U"\u03A8"}, {"Phi", U"\u03A6"},
    {"Pi", U"\u03A0"}, {"Prime", U"\u2033"}, {"Psi", U"\u03A8"}, {"RADIC", U"\u221A"},
    {"RANG", U"\u27E9"}, {"RAQUO", U"\u00BB"}, {"RARR", U"\u2192"}, {"RCEIL", U"\u2309"},
    {"RDQUO", U"\u201D"}, {"REAL", U"\u211C"}, {"RFLOOR", U"\u230B"}, {"RHO", U"\u03A1"},
    {"RLM", U"\u200F"}, {"RSAQUO", U"\u203A"}, {"RSQUO", U"\u2019"}, {"Rho", U"\u03A1"},
    {"SBQUO", U"\u201A"}, {"SCARON", U"\u0160"}, {"SDOT", U"\u22C5"}, {"SECT", U"\u00A7"},
    {"SHY", U"\u00AD"}, {"SIGMA", U"\u03A3"}, {"SIGMAF", U"\u03A3"}, {"SIM", U"\u223C"},
    {"SPADES", U"\u2660"}, {"SUB", U"\u2282"}, {"SUBE", U"\u2286"}, {"SUM", U"\u2211"},
    {"SUP", U"\u2283"}, {"SUP1", U"\u00B9"}, {"SUP2", U"\u00B2"}, {"SUP3", U"\u00B3"},
    {"SUPE", U"\u2287"}, {"SZLIG", U"SS"}, {"Scaron", U"\u0160"}, {"Sigma", U"\u03A3"},
    {"TAU", U"\u03A4"}, {"THERE4", U"\u2234"}, {"THETA", U"\u0398"}, {"THETASYM", U"\u0398"},
    {"THINSP", U"\u2009"}, {"THORN", U"\u00DE"}, {"TILDE", U"\u02DC"}, {"TIMES", U"\u00D7"},
    {"Tau", U"\u03A4"}, {"Theta", U"\u0398"}, {"UACUTE", U"\u00DA"}, {"UARR", U"\u2191"},
    {"UCIRC", U"\u00DB"}, {"UGRAVE", U"\u00D9"}, {"UML", U"\u00A8"}, {"UPSIH", U"\u03D2"},
    {"UPSILON", U"\u03A5"}, {"UUML", U"\u00DC"}, {"Uacute", U"\u00DA"}, {"Ucirc", U"\u00DB"},
    {"Ugrave", U"\u00D9"}, {"Upsilon", U"\u03A5"}, {"Uuml", U"\u00DC"}, {"WEIERP", U"\u2118"},
    {"XI", U"\u039E"}, {"Xi", U"\u039E"}, {"YACUTE", U"\u00DD"}, {"YEN", U"\u00A5"},
    {"YUML", U"\u0178"}, {"Yacute", U"\u00DD"}, {"Yuml", U"\u0178"}, {"ZETA", U"\u0396"},
    {"ZWJ", U"\u200D"}, {"ZWNJ", U"\u200C"}, {"Zeta", U"\u0396"}, {"aacute", U"\u00E1"},
    {"acirc", U"\u00E2"}, {"acute", U"\u00B4"}, {"aelig", U"\u00E6"}, {"agrave", U"\u00E0"},
    {"alefsym", U"\u2135"}, {"alpha", U"\u03B1"}, {"amp", U"&"}, {"and", U"\u2227"},
    {"ang", U"\u2220"}, {"apos", U"'"}, {"aring", U"\u00E5"}, {"asymp", U"\u2248"},
    {"atilde", U"\u00E3"}, {"auml", U"\u00E4"}, {"bdquo", U"\u201E"}, {"beta", U"\u03B2"},
    {"brvbar", U"\u00A6"}, {"bull", U"\u2022"}, {"cap", U"\u2229"}, {"ccedil", U"\u00E7"},
    {"cedil", U"\u00B8"}, {"cent", U"\u00A2"}, {"chi", U"\u03C7"}, {"circ", U"\u02C6"},
    {"clubs", U"\u2663"}, {"cong", U"\u2245"}, {"copy", U"\u00A9"}, {"crarr", U"\u21B5"},
    {"cup", U"\u222A"}, {"curren", U"\u00A4"}, {"dArr", U"\u21D3"}, {"dagger", U"\u2020"},
    {"darr", U"\u2193"}, {"deg", U"\u00B0"}, {"delta", U"\u03B4"}, {"diams", U"\u2666"},
    {"divide", U"\u00F7"}, {"eacute", U"\u00E9"}, {"ecirc", U"\u00EA"}, {"egrave", U"\u00E8"},
    {"empty", U"\u2205"}, {"emsp", U"\u2003"}, {"ensp", U"\u2002"}, {"epsilon", U"\u03B5"},
    {"equiv", U"\u2261"}, {"eta", U"\u03B7"}, {"eth", U"\u00F0"}, {"euml", U"\u00EB"},
    {"euro", U"\u20AC"}, {"exist", U"\u2203"}, {"fnof", U"\u0192"}, {"forall", U"\u2200"},
    {"frac12", U"\u00BD"}, {"frac14", U"\u00BC"}, {"frac34", U"\u00BE"}, {"frasl", U"\u2044"},
    {"gamma", U"\u03B3"}, {"ge", U"\u2265"}, {"gt", U">"}, {"hArr", U"\u21D4"}, {"harr", U"\u2194"},
    {"hearts", U"\u2665"}, {"hellip", U"\u2026"}, {"iacute", U"\u00ED"}, {"icirc", U"\u00EE"},
    {"iexcl", U"\u00A1"}, {"igrave", U"\u00EC"}, {"image", U"\u2111"}, {"infin", U"\u221E"},
    {"int", U"\u222B"}, {"iota", U"\u03B9"}, {"iquest", U"\u00BF"}, {"isin", U"\u2208"},
    {"iuml", U"\u00EF"}, {"kappa", U"\u03BA"}, {"lArr", U"\u21D0"}, {"lambda", U"\u03BB"},
    {"lang", U"\u27E8"}, {"laquo", U"\u00AB"}, {"larr", U"\u2190"}, {"lceil", U"\u2308"},
    {"ldquo", U"\u201C"}, {"le", U"\u2264"}, {"lfloor", U"\u230A"}, {"lowast", U"\u2217"},
    {"loz", U"\u25CA"}, {"lrm", U"\u200E"}, {"lsaquo", U"\u2039"}, {"lsquo", U"\u2018"},
    {"lt", U"<"}, {"macr", U"\u00AF"}, {"mdash", U"\u2014"}, {"micro", U"\u00B5"},
    {"middot", U"\u00B7"}, {"minus", U"\u2212"}, {"mu", U"\u03BC"}, {"nabla", U"\u2207"},
    {"nbsp", U"\u00A0"}, {"ndash", U"\u2013"}, {"ne", U"\u2260"}, {"ni", U"\u220B"},
    {"not", U"\u00AC"}, {"notin", U"\u2209"}, {"nsub", U"\u2284"}, {"ntilde", U"\u00F1"},
    {"nu", U"\u03BD"}, {"oacute", U"\u00F3"}, {"ocirc", U"\u00F4"}, {"oelig", U"\u0153"},
    {"ograve", U"\u00F2"}, {"oline", U"\u203E"}, {"omega", U"\u03C9"}, {"omicron", U"\u03BF"},
    {"oplus", U"\u2295"}, {"or", U"\u2228"}, {"ordf", U"\u00AA"}, {"ordm", U"\u00BA"},
    {"oslash", U"\u00F8"}, {"otilde", U"\u00F5"}, {"otimes", U"\u2297"}, {"ouml", U"\u00F6"},
    {"para", U"\u00B6"}, {"part", U"\u2202"}, {"permil", U"\u2030"}, {"perp", U"\u22A5"},
    {"phi", U"\u03C6"}, {"pi", U"\u03C0"}, {"piv", U"\u03D6"}, {"plusmn", U"\u00B1"},
    {"pound", U"\u00A3"}, {"prime", U"\u2032"}, {"prod", U"\u220F"}, {"prop", U"\u221D"},
    {"psi", U"\u03C8"}, {"quot", U"\u0022"}, {"rArr", U"\u21D2"}, {"radic", U"\u221A"},
    {"rang", U"\u27E9"}, {"raquo", U"\u00BB"}, {"rarr", U"\u2192"}, {"rceil", U"\u2309"},
    {"rdquo", U"\u201D"}, {"real", U"\u211C"}, {"reg", U"\u00AE"}, {"rfloor", U"\u230B"},
    {"rho", U"\u03C1"}, {"rlm", U"\u200F"}, {"rsaquo", U"\u203A"}, {"rsquo", U"\u2019"},
    {"sbquo", U"\u201A"}, {"scaron", U"\u0161"}, {"sdot", U"\u22C5"}, {"sect", U"\u00A7"},
    {"shy", U"\u00AD"}, {"sigma", U"\u03C3"}, {"sigmaf", U"\u03C2"}, {"sim", U"\u223C"},
    {"spades", U"\u2660"}, {"sub", U"\u2282"}, {"sube", U"\u2286"}, {"sum", U"\u2211"},
    {"sup", U"\u2283"}, {"sup1", U"\u00B9"}, {"sup2", U"\u00B2"}, {"sup3", U"\u00B3"},
    {"supe", U"\u2287"}, {"szlig", U"\u00DF"}, {"tau", U"\u03C4"}, {"there4", U"\u2234"},
    {"theta", U"\u03B8"}, {"thetasym", U"\u03D1"}, {"thinsp", U"\u2009"}, {"thorn", U"\u00FE"},
    {"tilde", U"\u02DC"}, {"times", U"\u00D7"}, {"trade", U"\u2122"}, {"uArr", U"\u21D1"},
    {"uacute", U"\u00FA"}, {"uarr", U"\u2191"}, {"ucirc", U"\u00FB"}, {"ugrave", U"\u00F9"},
    {"uml", U"\u00A8"}, {"upsih", U"\u03D2"}, {"upsilon", U"\u03C5"}, {"uuml", U"\u00FC"},
    {"weierp", U"\u2118"}, {"xi", U"\u03BE"}, {"yacute", U"\u00FD"}, {"yen", U"\u00A5"},
    {"yuml", U"\u00FF"}, {"zeta", U"\u03B6"}, {"zwj", U"\u200D"}, {"zwnj", U"\u200C"},
  };
  return table;
}

const icu::RegexPattern& html_entity_re() {
  static const std::unique_ptr<icu::RegexPattern> re = compile("&#?[0-9A-Za-z]{1,24};");
  return *re;
}

// Python's html.unescape rules for a numeric reference's code point.
UnicodeString char_ref(unsigned long code) {
  if (code == 0) return UnicodeString(static_cast<UChar32>(0xFFFD));
  if (code == 0x0D) return UnicodeString(u"\r");
  if (is_c1(static_cast<UChar32>(code))) return fix_c1_controls(UnicodeString(static_cast<UChar32>(code)));
  if ((code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) return UnicodeString(static_cast<UChar32>(0xFFFD));
  const bool invalid = (code >= 0x1 && code <= 0x8) || code == 0xB || (code >= 0xE && code <= 0x1F) ||
                       code == 0x7F || (code >= 0xFDD0 && code <= 0xFDEF) || (code & 0xFFFE) == 0xFFFE;
  return invalid ? UnicodeString() : UnicodeString(static_cast<UChar32>(code));
}

// "&#65;" / "&#x41;" -> "A"; anything html.unescape would only partly consume stays.
std::optional<UnicodeString> numeric_entity(const std::string& body) {
  const bool hex = !body.empty() && (body[0] == 'x' || body[0] == 'X');
  const std::string digits = hex ? body.substr(1) : body;
  if (digits.empty()) return std::nullopt;
  unsigned long code = 0;
  for (char ch : digits) {
    const int value = u_digit(static_cast<unsigned char>(ch), hex ? 16 : 10);
    if (value < 0) return std::nullopt;
    code = std::min(code * (hex ? 16 : 10) + value, 0x110000UL);  // saturate: too big is too big
  }
  UnicodeString result = char_ref(code);
  if (result.indexOf(u';') >= 0) return std::nullopt;  // ftfy insists the ';' was consumed
  return result;
}

UnicodeString unescape_html(const UnicodeString& text) {
  return regex_sub(html_entity_re(), text, [](const UnicodeString& m) {
    const std::string entity = to_utf8(m);
    const std::string body = entity.substr(1, entity.size() - 2);
    if (body[0] == '#') return numeric_entity(body.substr(1)).value_or(m);
    auto it = html_entities().find(body);
    if (it == html_entities().end()) return m;
    return UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(it->second.data()),
                                    static_cast<int32_t>(it->second.size()));
  });
}

// ------------------------------------------------------ the other ftfy fixers

UnicodeString fix_latin_ligatures(const UnicodeString& text) {
  static const std::unordered_map<UChar32, const char16_t*> ligatures = {
      {0x132, u"IJ"}, {0x133, u"ij"}, {0x149, u"\u02bcn"}, {0x1F1, u"DZ"}, {0x1F2, u"Dz"},
      {0x1F3, u"dz"}, {0x1C4, u"D\u017d"}, {0x1C5, u"D\u017e"}, {0x1C6, u"d\u017e"}, {0x1C7, u"LJ"},
      {0x1C8, u"Lj"}, {0x1C9, u"lj"}, {0x1CA, u"NJ"}, {0x1CB, u"Nj"}, {0x1CC, u"nj"},
      {0xFB00, u"ff"}, {0xFB01, u"fi"}, {0xFB02, u"fl"}, {0xFB03, u"ffi"}, {0xFB04, u"ffl"},
      {0xFB05, u"\u017ft"}, {0xFB06, u"st"}};
  return map_chars(text, [](UChar32 c) {
    auto it = ligatures.find(c);
    return it == ligatures.end() ? UnicodeString(c) : UnicodeString(it->second);
  });
}

// Halfwidth/fullwidth forms (U+FF01..U+FFEF) to their NFKC form; U+3000 to a space.
UnicodeString fix_character_width(const UnicodeString& text) {
  return map_chars(text, [](UChar32 c) {
    if (c == 0x3000) return UnicodeString(u" ");
    if (c >= 0xFF01 && c <= 0xFFEF) return nfkc(UnicodeString(c));
    return UnicodeString(c);
  });
}

UnicodeString uncurl_quotes(const UnicodeString& text) {
  return map_chars(text, [](UChar32 c) {
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) return UnicodeString(u"'");
    if (c >= 0x201C && c <= 0x201F) return UnicodeString(u"\"");
    return UnicodeString(c);
  });
}

UnicodeString fix_line_breaks(const UnicodeString& text) {
  UnicodeString s(text);
  s.findAndReplace(u"\r\n", u"\n");
  return map_chars(s, [](UChar32 c) {
    const bool line_break = c == u'\r' || c == 0x2028 || c == 0x2029 || c == 0x85;
    return UnicodeString(line_break ? static_cast<UChar32>(u'\n') : c);
  });
}

UnicodeString remove_terminal_escapes(const UnicodeString& text) {
  static const std::unique_ptr<icu::RegexPattern> ansi = compile("\\x{1b}\\[[\\d;]*[a-zA-Z]");
  return regex_sub(*ansi, text, [](const UnicodeString&) { return UnicodeString(); });
}

// ftfy's list: C0 controls except \t \n \f \r, DEL, deprecated Arabic format
// controls, BOM, interlinear annotations and U+FFFC. Joiners etc. are kept.
bool is_removed_control(UChar32 c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

UnicodeString remove_control_chars(const UnicodeString& text) {
  return map_chars(text, [](UChar32 c) { return is_removed_control(c) ? UnicodeString() : UnicodeString(c); });
}

// ftfy's fix_and_explain: every fixer in order, repeated until nothing changes.
UnicodeString fix_segment(UnicodeString text, bool unescape) {
  for (;;) {
    const UnicodeString original = text;
    if (unescape) text = unescape_html(text);
    text = fix_encoding(text);
    text = fix_c1_controls(text);
    text = fix_latin_ligatures(text);
    text = fix_character_width(text);
    text = uncurl_quotes(text);
    text = fix_line_breaks(text);
    text = remove_terminal_escapes(text);
    text = remove_control_chars(text);
    text = nfc(text);
    if (text == original) return text;
  }
}

UnicodeString fix_text(const UnicodeString& text) {
  UnicodeString out;
  bool unescape = true;  // "auto": off for good once a '<' suggests real HTML
  int32_t pos = 0;
  while (pos < text.length()) {
    int32_t end = text.indexOf(u'\n', pos);
    end = end < 0 ? text.length() : end + 1;
    const UnicodeString segment = text.tempSubStringBetween(pos, end);
    if (segment.indexOf(u'<') >= 0) unescape = false;
    out.append(fix_segment(segment, unescape));
    pos = end;
  }
  return out;
}

// CLIP's whitespace_clean: every \s+ run to one space, then strip.
UnicodeString whitespace_clean(const UnicodeString& text) {
  UnicodeString out;
  bool in_space = false;
  for (int32_t i = 0; i < text.length(); i = text.moveIndex32(i, 1)) {
    const UChar32 c = text.char32At(i);
    if (u_isUWhiteSpace(c)) {
      if (!in_space) out.append(u' ');
      in_space = true;
    } else {
      out.append(c);
      in_space = false;
    }
  }
  int32_t begin = 0, end = out.length();
  while (begin < end && py_isspace(out.char32At(begin))) begin = out.moveIndex32(begin, 1);
  while (end > begin && py_isspace(out.char32At(out.moveIndex32(end, -1)))) end = out.moveIndex32(end, -1);
  return UnicodeString(out, begin, end - begin);
}

// ------------------------------------------------------ BasicTokenizer fallback

bool is_cjk_ideograph(UChar32 c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// BasicTokenizer._clean_text + _tokenize_chinese_chars: drop NUL, U+FFFD and
// category C* except \t\n\r; Zs and \t\n\r become spaces; CJK gets spaces around.
UnicodeString basic_clean_chars(const UnicodeString& text) {
  return map_chars(text, [](UChar32 c) {
    const bool whitespace = c == u' ' || c == u'\t' || c == u'\n' || c == u'\r' || u_charType(c) == U_SPACE_SEPARATOR;
    if (whitespace) return UnicodeString(u" ");
    const int8_t type = u_charType(c);
    const bool control = type == U_CONTROL_CHAR || type == U_FORMAT_CHAR || type == U_SURROGATE ||
                         type == U_PRIVATE_USE_CHAR || type == U_UNASSIGNED;
    if (c == 0 || c == 0xFFFD || control) return UnicodeString();
    if (is_cjk_ideograph(c)) return UnicodeString(u" ").append(c).append(u' ');
    return UnicodeString(c);
  });
}

// Python's str.split(): maximal runs of non-isspace characters.
std::vector<UnicodeString> split_whitespace(const UnicodeString& text) {
  std::vector<UnicodeString> words;
  UnicodeString word;
  for (int32_t i = 0; i < text.length(); i = text.moveIndex32(i, 1)) {
    const UChar32 c = text.char32At(i);
    if (!py_isspace(c)) {
      word.append(c);
    } else if (!word.isEmpty()) {
      words.push_back(word);
      word.remove();
    }
  }
  if (!word.isEmpty()) words.push_back(word);
  return words;
}

}  // namespace

std::string ftfy_fix_text(const std::string& utf8) { return to_utf8(fix_text(UnicodeString::fromUTF8(utf8))); }

std::string clean_text_ftfy(const std::string& utf8) {
  return to_utf8(py_lower(whitespace_clean(fix_text(UnicodeString::fromUTF8(utf8)))));
}

std::string clean_text_basic(const std::string& utf8) {
  const UnicodeString text = nfc(basic_clean_chars(UnicodeString::fromUTF8(utf8)));
  UnicodeString out;
  for (const UnicodeString& word : split_whitespace(text)) {
    if (!out.isEmpty()) out.append(u' ');
    out.append(py_lower(word));
  }
  return to_utf8(out);
}

}  // namespace lumen
