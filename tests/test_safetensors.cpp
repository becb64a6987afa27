// safetensors reading and writing, and every kind of broken file.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <unistd.h>

#include <fstream>
#include <random>

#include "error.h"
#include "io/safetensors_torch.h"

namespace {

using lumen::Error;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/lumen_test_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A file whose header is `json` (padded) followed by `data_bytes` zero bytes.
std::string write_raw(const TempDir& dir, const std::string& json, size_t data_bytes, uint64_t declared_len = 0) {
  const std::string path = dir.file("raw.safetensors");
  std::ofstream out(path, std::ios::binary);
  uint64_t n = declared_len ? declared_len : json.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(n >> (8 * i)));
  out << json << std::string(data_bytes, '\0');
  return path;
}

// Expects opening to fail with a message naming the file and containing `problem`.
void expect_error(const std::string& path, const std::string& problem) {
  try {
    lumen::SafetensorsFile::open(path);
    FAIL() << "no error for " << problem;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(problem), std::string::npos) << msg;
  }
}

TEST(Safetensors, RoundTripEveryDtype) {
  TempDir dir;
  std::map<std::string, torch::Tensor> tensors = {
      {"f32", torch::randn({2, 3})},
      {"f16", torch::randn({4}).to(torch::kHalf)},
      {"bf16", torch::randn({3, 1}).to(torch::kBFloat16)},
      {"f64", torch::randn({2}, torch::kDouble)},
      {"i64", torch::arange(5, torch::kLong)},
      {"i32", torch::arange(3, torch::kInt)},
      {"u8", torch::arange(7, torch::kByte)},
      {"bool", torch::tensor({true, false, true})},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::empty({0, 4})},
  };
  const std::string path = dir.file("all.safetensors");
  lumen::save_safetensors(path, tensors, {{"format", "pt"}});
  auto file = lumen::SafetensorsFile::open(path);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  auto loaded = lumen::load_safetensors(path);
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(loaded.count(name)) << name;
    EXPECT_EQ(loaded[name].scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(loaded[name], t)) << name;
  }
}

TEST(Safetensors, HeaderIsPaddedAndKeysSorted) {
  TempDir dir;
  const std::string path = dir.file("p.safetensors");
  lumen::save_safetensors(path, {{"b", torch::ones({1})}, {"a", torch::zeros({3})}});
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(in.get())) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  std::string header(n, ' ');
  in.read(header.data(), static_cast<std::streamsize>(n));
  EXPECT_LT(header.find("\"a\""), header.find("\"b\""));
  auto file = lumen::SafetensorsFile::open(path);
  EXPECT_EQ(file->at("a").begin, 0u);  // data in key order
}

TEST(Safetensors, ViewsAreZeroCopyAndOutliveTheHandle) {
  TempDir dir;
  const std::string path = dir.file("v.safetensors");
  lumen::save_safetensors(path, {{"x", torch::arange(16, torch::kFloat)}});
  torch::Tensor view;
  {
    auto file = lumen::SafetensorsFile::open(path);
    view = lumen::tensor_view(file, file->at("x"));
    EXPECT_EQ(view.data_ptr(), static_cast<const void*>(file->data(file->at("x"))));
  }
  EXPECT_EQ(view[15].item<float>(), 15.0f);  // the mapping is kept alive by the view
}

TEST(Safetensors, WriteIsAtomicAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir.file("a.safetensors");
  lumen::save_safetensors(path, {{"x", torch::ones({2})}});
  lumen::save_safetensors(path, {{"y", torch::ones({3})}});
  auto file = lumen::SafetensorsFile::open(path);
  EXPECT_NE(file->find("y"), nullptr);
  EXPECT_EQ(file->find("x"), nullptr);
  EXPECT_THROW(lumen::save_safetensors(dir.file("no/such/dir/x.safetensors"), {{"x", torch::ones({1})}}), Error);
  // A folder where the file goes is named as one (it was "cannot move the
  // written file into place"), and no temporary is left beside it.
  std::filesystem::create_directory(dir.file("folder.safetensors"));
  try {
    lumen::save_safetensors(dir.file("folder.safetensors"), {{"x", torch::ones({1})}});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("folder.safetensors: is a folder"), std::string::npos) << e.what();
  }
  size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir.file(""))) ++entries;
  EXPECT_EQ(entries, 2u);  // a.safetensors and the folder
  // Only regular files are replaced: renaming over a device node once turned
  // /dev/null into a model file (`lumen convert -o /dev/null --overwrite`, as root).
  ASSERT_EQ(::mkfifo(dir.file("fifo.safetensors").c_str(), 0600), 0);
  try {
    lumen::save_safetensors(dir.file("fifo.safetensors"), {{"x", torch::ones({1})}});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a regular file"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::is_fifo(dir.file("fifo.safetensors")));
  // A symbolic link is written through: the link stays, its target gets the data.
  std::filesystem::create_symlink(dir.file("a.safetensors"), dir.file("link.safetensors"));
  lumen::save_safetensors(dir.file("link.safetensors"), {{"z", torch::ones({4})}});
  EXPECT_TRUE(std::filesystem::is_symlink(dir.file("link.safetensors")));
  EXPECT_NE(lumen::SafetensorsFile::open(dir.file("a.safetensors"))->find("z"), nullptr);
  // A missing folder is named as such (it was "cannot write (temporary file …)").
  try {
    lumen::save_safetensors(dir.file("missing/x.safetensors"), {{"x", torch::ones({1})}});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("its folder does not exist"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsBadInput, TooShort) {
  TempDir dir;
  const std::string path = dir.file("short.safetensors");
  std::ofstream(path) << "abc";
  expect_error(path, "too short");
}

TEST(SafetensorsBadInput, Missing) { expect_error("/nonexistent/x.safetensors", "cannot open"); }

TEST(SafetensorsBadInput, HeaderLengthPastEnd) {
  TempDir dir;
  expect_error(write_raw(dir, "{}", 0, 1'000'000), "runs past the end of the file");
}

TEST(SafetensorsBadInput, Truncated) {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  lumen::save_safetensors(path, {{"x", torch::ones({100})}});
  ::truncate(path.c_str(), 200);
  expect_error(path, "run past the end of the data");
}

TEST(SafetensorsBadInput, InvalidJson) {
  TempDir dir;
  expect_error(write_raw(dir, "{\"x\": {\"dtype\": ", 0), "not valid JSON");
}

TEST(SafetensorsBadInput, DeepNestingIsRefusedWithoutCrashing) {
  TempDir dir;
  expect_error(write_raw(dir, std::string(100000, '[') + std::string(100000, ']'), 0), "nests deeper");
}

TEST(SafetensorsBadInput, NotAnObject) {
  TempDir dir;
  expect_error(write_raw(dir, "[1, 2]   ", 0), "not a JSON object");
}

TEST(SafetensorsBadInput, UnknownDtype) {
  TempDir dir;
  expect_error(write_raw(dir, R"({"x":{"dtype":"F7","shape":[1],"data_offsets":[0,4]}})", 4), "unknown dtype");
}

TEST(SafetensorsBadInput, MissingField) {
  TempDir dir;
  expect_error(write_raw(dir, R"({"x":{"dtype":"F32","data_offsets":[0,4]}})", 4), "missing field 'shape'");
}

TEST(SafetensorsBadInput, NegativeShape) {
  TempDir dir;
  expect_error(write_raw(dir, R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "non-negative");
}

TEST(SafetensorsBadInput, ShapeDoesNotMatchBytes) {
  TempDir dir;
  expect_error(write_raw(dir, R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "do not match");
}

TEST(SafetensorsBadInput, OverflowingShape) {
  TempDir dir;
  expect_error(write_raw(dir, R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}})", 8),
               "overflows");
}

TEST(SafetensorsBadInput, OffsetsOutOfRange) {
  TempDir dir;
  expect_error(write_raw(dir, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 8), "run past the end");
}

TEST(SafetensorsBadInput, OffsetsReversed) {
  TempDir dir;
  expect_error(write_raw(dir, R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 8), "end before begin");
}

TEST(SafetensorsBadInput, OverlappingTensors) {
  TempDir dir;
  expect_error(write_raw(dir,
                         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         12),
               "overlap");
}

TEST(SafetensorsBadInput, BadMetadata) {
  TempDir dir;
  expect_error(write_raw(dir, R"({"__metadata__":{"k":1}})", 0), "__metadata__");
}

TEST(SafetensorsBadInput, UnknownKeyLookupNamesFileAndKey) {
  TempDir dir;
  const std::string path = dir.file("k.safetensors");
  lumen::save_safetensors(path, {{"x", torch::ones({1})}});
  auto file = lumen::SafetensorsFile::open(path);
  try {
    file->at("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
  }
}

// Hostile files: random corruption of a valid header must give either a valid
// file or a lumen::Error, never a crash, hang or other exception.
TEST(SafetensorsBadInput, RandomHeaderCorruptionNeverCrashes) {
  TempDir dir;
  const std::string good = dir.file("good.safetensors");
  lumen::save_safetensors(good, {{"a", torch::ones({3, 2})}, {"b", torch::arange(4, torch::kLong)}},
                          {{"k", "v"}});
  std::ifstream in(good, std::ios::binary);
  const std::string original((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::mt19937 rng(1234);
  const std::string alphabet = "{}[]\",:0123456789-eE.FIUBOLdtypeshapdaofs_ \\";
  int opened = 0, refused = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string bytes = original;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % std::min<size_t>(bytes.size(), 8 + 160);
      bytes[pos] = rng() % 3 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng());
    }
    if (rng() % 5 == 0) bytes.resize(rng() % bytes.size());
    const std::string path = dir.file("fuzz.safetensors");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    try {
      auto f = lumen::SafetensorsFile::open(path);
      for (const auto& entry : f->entries()) lumen::tensor_view(f, entry).sum();
      ++opened;
    } catch (const Error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_EQ(opened + refused, 3000);
}

}  // namespace
