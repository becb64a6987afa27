// Golden tests: one GoogleTest per case of the manifest, each printing
//   golden <kind> <case-name>: PASS|FAIL|SKIP max_abs_err=<e> tol=<t>
// Exits 77 (CTest: skipped) when the golden directory is missing.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>

#include "golden_cases.h"
#include "runtime.h"

namespace {

using lumen::golden::Case;

class GoldenCase : public testing::Test {
 public:
  GoldenCase(std::string root, nlohmann::json entry) : root_(std::move(root)), entry_(std::move(entry)) {}
  void TestBody() override {
    const std::string kind = entry_.at("kind"), name = entry_.at("name");
    if (!lumen::golden::kind_supported(kind)) {
      std::printf("golden %s %s: SKIP max_abs_err=0 tol=0 (kind not implemented yet)\n", kind.c_str(), name.c_str());
      GTEST_SKIP() << "kind " << kind << " not implemented yet";
    }
    Case c = lumen::golden::load_case(root_, entry_);
    lumen::golden::Result r;
    try {
      r = lumen::golden::run_case(c);
    } catch (const lumen::golden::SkipCase& e) {
      std::printf("golden %s %s: SKIP max_abs_err=0 tol=0 (%s)\n", kind.c_str(), name.c_str(), e.what());
      GTEST_SKIP() << e.what();
    } catch (const std::exception& e) {
      r.pass = false;
      r.detail = std::string("error: ") + e.what();
    }
    std::printf("golden %s %s: %s max_abs_err=%.3g tol=%.3g\n", kind.c_str(), name.c_str(), r.pass ? "PASS" : "FAIL",
                r.max_abs_err, c.atol);
    std::fflush(stdout);
    EXPECT_TRUE(r.pass) << name << ": " << r.detail;
  }

 private:
  std::string root_;
  nlohmann::json entry_;
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  lumen::set_threads(0);
  // On a GPU, float32 means float32: no TF32 products (the golden tolerances are float32's).
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  try {
    std::printf("golden: networks on %s\n", lumen::golden::test_device().str().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "LUMEN_TEST_DEVICE: %s\n", e.what());
    return 1;
  }
  const std::string root = lumen::golden::golden_dir();
  std::ifstream in(root + "/manifest.json");
  if (!in) {
    std::fprintf(stderr,
                 "\n*** GOLDEN DATA MISSING: %s/manifest.json not found. Set LUMEN_GOLDEN_DIR. "
                 "No golden case ran. ***\n\n",
                 root.c_str());
    return 77;
  }
  nlohmann::json manifest = nlohmann::json::parse(in);
  for (const auto& entry : manifest.at("cases")) {
    const std::string kind = entry.at("kind"), name = entry.at("name");
    testing::RegisterTest(("golden_" + kind).c_str(), name.c_str(), nullptr, nullptr, __FILE__, __LINE__,
                          [root, entry]() -> testing::Test* { return new GoldenCase(root, entry); });
  }
  return RUN_ALL_TESTS();
}
