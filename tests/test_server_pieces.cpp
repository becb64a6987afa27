// The server's torch-free pieces: base64, auth, A1111 request bodies, LoRA
// tags and sampler names. They read what a network client sends, so they
// also run in the sanitized build of the parsers (fuzz/CMakeLists.txt).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "error.h"
#include "server/a1111_request.h"
#include "server/api_error.h"
#include "server/auth.h"
#include "server/base64.h"

namespace {

using namespace lumen::server;
using nlohmann::json;

TEST(ServerPieces, Base64RoundTripAndStrictDecoding) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)})
    EXPECT_EQ(base64_decode(base64_encode(s)).value_or("?"), s.empty() ? "?" : s);
  EXPECT_EQ(base64_decode("data:image/png;base64,aGVsbG8=").value_or(""), "hello");
  EXPECT_EQ(base64_decode("aGVs\nbG8=").value_or(""), "hello");
  for (const char* bad : {"aGVsbG8", "aGV$bG8=", "a===", "=aGV", "aG=sbG8=", "data:text/plain,aGVsbG8=", "data:P,x",
                          "data:;base64"})
    EXPECT_FALSE(base64_decode(bad)) << bad;
}

TEST(ServerPieces, AuthComparesSecretsAndRejectsMalformedCredentials) {
  EXPECT_TRUE(constant_time_equals("secret", "secret"));
  EXPECT_FALSE(constant_time_equals("secret", "secreT"));
  EXPECT_FALSE(constant_time_equals("secret", "secret2"));
  const Auth key = Auth::api_key("k1");
  EXPECT_TRUE(key.allows("Bearer k1"));
  EXPECT_FALSE(key.allows("Bearer k2"));
  EXPECT_FALSE(key.allows("k1"));
  const Auth basic = Auth::basic("ann:pw1,bob:pw2");
  EXPECT_TRUE(basic.allows("Basic " + base64_encode("bob:pw2")));
  EXPECT_FALSE(basic.allows("Basic " + base64_encode("bob:pw1")));
  EXPECT_FALSE(basic.allows("Basic !!!"));
  EXPECT_THROW(Auth::basic("nopassword"), lumen::Error);
  EXPECT_THROW(Auth::basic("a:b,"), lumen::Error);
}

TEST(ServerPieces, LoraTagsAndSamplerNames) {
  std::vector<LoraTag> tags;
  EXPECT_EQ(extract_lora_tags("a <lora:one:0.5> cat <lyco:two> <lora:three:0.7:0.2>", tags), "a  cat  ");
  ASSERT_EQ(tags.size(), 3u);
  EXPECT_EQ(tags[0].name, "one");
  EXPECT_FLOAT_EQ(tags[0].weight, 0.5f);
  EXPECT_FLOAT_EQ(tags[1].weight, 1.0f);
  EXPECT_FLOAT_EQ(tags[2].weight, 0.7f);
  EXPECT_THROW(extract_lora_tags("<lora:x:heavy>", tags), ApiError);
  EXPECT_EQ(extract_lora_tags(std::string(1 << 20, '<') + "lora:", tags).size(), (1u << 20) + 5);  // no tag, no hang
  EXPECT_EQ(lumen_sampler("Euler a", "").value_or(""), "euler_a");
  EXPECT_EQ(lumen_sampler("k_euler", "").value_or(""), "euler");
  EXPECT_EQ(lumen_sampler("DPM++ 2M", "Karras").value_or(""), "dpm++_2m_karras");
  EXPECT_FALSE(lumen_sampler("Euler", "Karras"));
  EXPECT_FALSE(lumen_sampler("Heun", ""));
}

// Every field a client sends is checked against its type and the server's
// limits; the refusal names the field (HTTP 422) or the sampler (404).
TEST(ServerPieces, RequestBodiesAreCheckedFieldByField) {
  const Limits limits;
  const auto status_of = [&](const json& body, bool img2img = false) {
    try {
      parse_generation_request(body, img2img, limits);
    } catch (const ApiError& e) {
      return e.status;
    }
    return 200;
  };
  const auto r = parse_generation_request(
      json{{"prompt", "a cat <lora:style:0.5>"}, {"sampler_name", "Euler a"}, {"steps", 20}, {"width", 512},
           {"height", 768}, {"cfg_scale", 7}, {"seed", 42}, {"batch_size", 2}, {"n_iter", 3},
           {"override_settings", {{"sd_model_checkpoint", "other"}}}, {"unknown_field", true}},
      false, limits);
  EXPECT_EQ(r.prompt, "a cat ");
  ASSERT_EQ(r.loras.size(), 1u);
  EXPECT_EQ(r.sampler, "euler_a");
  EXPECT_EQ(r.steps.value_or(0), 20);
  EXPECT_EQ(r.width.value_or(0), 512);
  EXPECT_EQ(r.height.value_or(0), 768);
  EXPECT_EQ(r.seed, 42);
  EXPECT_EQ(r.batch_size * r.n_iter, 6);
  EXPECT_EQ(r.checkpoint, "other");
  EXPECT_FALSE(parse_generation_request(json::object(), false, limits).steps);  // unset: the model's choice
  for (const json& bad : {json::array(), json{{"prompt", 5}}, json{{"steps", 0}}, json{{"steps", 151}},
                          json{{"steps", 2.5}}, json{{"steps", "20"}}, json{{"steps", 1e300}},
                          json{{"seed", -2}}, json{{"width", 100}}, json{{"width", 8192}},
                          json{{"width", 4096}, {"height", 4096}}, json{{"cfg_scale", -1}},
                          json{{"batch_size", 16}, {"n_iter", 2}}, json{{"override_settings", "x"}},
                          json{{"override_settings_restore_afterwards", 1}}})
    EXPECT_EQ(status_of(bad), 422) << bad.dump();
  EXPECT_EQ(status_of(json{{"sampler_name", "No Such Sampler"}}), 404);
  EXPECT_EQ(status_of(json::object(), true), 422);  // img2img without init_images
  EXPECT_EQ(status_of(json{{"init_images", {"not base64!"}}}, true), 422);
  const auto i2i = parse_generation_request(json{{"init_images", {base64_encode("bytes")}}, {"denoising_strength", 0.3}},
                                            true, limits);
  EXPECT_EQ(i2i.init_image_bytes, "bytes");
  EXPECT_FLOAT_EQ(i2i.denoising_strength, 0.3f);
}

}  // namespace
