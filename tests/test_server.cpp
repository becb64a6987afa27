// `lumen serve` over real HTTP on loopback: every endpoint on the embedded
// default model, hostile requests, auth, a 50-request burst against a small
// queue, interrupt, and a graceful shutdown that answers everyone.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "error.h"
#include "lumen/lumen.hpp"
#include "server/a1111_request.h"
#include "server/api_error.h"
#include "server/auth.h"
#include "server/base64.h"
#include "server/http_server.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace lumen::server;

namespace {

// A server on a free loopback port, serving from a thread.
class Running {
 public:
  explicit Running(ServerOptions options) {
    options.host = "127.0.0.1";
    options.port = 0;
    options.threads = 1;
    server_ = std::make_unique<Server>(options);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->serve(); });
  }
  ~Running() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    server_->shutdown();
    thread_.join();
  }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(300);
    c.set_connection_timeout(30);
    return c;
  }

 private:
  std::unique_ptr<Server> server_;
  int port_ = 0;
  std::thread thread_;
};

httplib::Result post(const Running& s, const std::string& path, const json& body, const httplib::Headers& headers = {}) {
  return s.client().Post(path.c_str(), headers, body.dump(), "application/json");
}

json body_of(const httplib::Result& r) { return json::parse(r->body); }

// The PNG of a response image, decoded.
lumen::Images decode_png(const std::string& b64) {
  const auto bytes = base64_decode(b64);
  if (!bytes) throw std::runtime_error("response image is not base64");
  return lumen::Images::decode(*bytes);
}

// A temporary folder with links to the shipped assets.
struct Folders {
  Folders() {
    root = fs::temp_directory_path() / ("lumen-server-test-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "models" / "sub");
    fs::create_directories(root / "loras");
    fs::create_directory_symlink(fs::absolute("assets/default-model"), root / "models" / "sub" / "shapes");
    fs::create_symlink(fs::absolute("assets/unifl-lora/unifl-shapes.safetensors"), root / "loras" / "unifl.safetensors");
    std::ofstream(root / "loras" / "broken.safetensors") << "not a safetensors file";
  }
  ~Folders() { fs::remove_all(root); }
  fs::path root;
};

ServerOptions with_folders(const Folders& f) {
  ServerOptions o;
  o.models_dir = (f.root / "models").string();
  o.lora_dir = (f.root / "loras").string();
  o.web_page = "assets/web/index.html";
  return o;
}

const json kSmall = {{"prompt", "a small red circle at the top on a white background"}, {"steps", 4}, {"seed", 7}};

}  // namespace

// ---- over HTTP ----

TEST(Server, ListsModelsSamplersLorasAndServesThePage) {
  Folders f;
  Running s(with_folders(f));
  auto c = s.client();
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("id=\"generate\""), std::string::npos);

  const json models = body_of(c.Get("/sdapi/v1/sd-models"));
  ASSERT_EQ(models.size(), 2u) << models.dump();
  EXPECT_EQ(models[0]["title"], "lumen-default");
  EXPECT_EQ(models[1]["title"], "sub/shapes");

  const json samplers = body_of(c.Get("/sdapi/v1/samplers"));
  bool euler_a = false;
  for (const auto& sampler : samplers) euler_a |= sampler["name"] == "Euler a";
  EXPECT_TRUE(euler_a) << samplers.dump();

  const json loras = body_of(c.Get("/sdapi/v1/loras"));
  ASSERT_EQ(loras.size(), 2u) << loras.dump();
  EXPECT_EQ(loras[0]["name"], "broken");
  EXPECT_EQ(loras[1]["name"], "unifl");

  // Files added later appear after a refresh.
  fs::create_symlink(fs::absolute("assets/unifl-lora/unifl-shapes.safetensors"), f.root / "loras" / "late.safetensors");
  fs::create_directory_symlink(fs::absolute("assets/default-model"), f.root / "models" / "late");
  EXPECT_EQ(body_of(c.Get("/sdapi/v1/loras")).size(), 2u);
  EXPECT_EQ(c.Post("/sdapi/v1/refresh-loras")->status, 200);
  EXPECT_EQ(c.Post("/sdapi/v1/refresh-checkpoints")->status, 200);
  EXPECT_EQ(body_of(c.Get("/sdapi/v1/loras")).size(), 3u);
  EXPECT_EQ(body_of(c.Get("/sdapi/v1/sd-models")).size(), 3u);

  EXPECT_EQ(body_of(c.Get("/sdapi/v1/options"))["sd_model_checkpoint"], "lumen-default");
  auto set = post(s, "/sdapi/v1/options", {{"sd_model_checkpoint", "sub/shapes"}, {"CLIP_stop_at_last_layers", 1}});
  ASSERT_EQ(set->status, 200) << set->body;
  EXPECT_EQ(body_of(c.Get("/sdapi/v1/options"))["sd_model_checkpoint"], "sub/shapes");
  auto progress = c.Get("/sdapi/v1/progress");
  EXPECT_EQ(body_of(progress)["progress"], 0.0);
}

TEST(Server, Txt2imgReturnsPngsWithParametersAndSeeds) {
  Folders f;
  Running s(with_folders(f));
  json request = kSmall;
  request["sampler_name"] = "Euler a";
  request["batch_size"] = 2;
  request["n_iter"] = 2;
  request["an_unknown_field"] = {1, 2};  // ignored, as A1111 does
  auto r = post(s, "/sdapi/v1/txt2img", request);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json body = body_of(r);
  ASSERT_EQ(body["images"].size(), 4u);
  const json info = json::parse(body["info"].get<std::string>());
  EXPECT_EQ(info["all_seeds"], json({7, 8, 9, 10}));
  EXPECT_EQ(info["interrupted"], false);
  EXPECT_EQ(body["parameters"]["seed"], 7);
  for (size_t i = 0; i < 4; ++i) {
    const lumen::Images png = decode_png(body["images"][i]);
    EXPECT_EQ(png[0].width, 64u);
    const std::string infotext = info["infotexts"][i];
    EXPECT_NE(infotext.find("Sampler: Euler a"), std::string::npos) << infotext;
    EXPECT_NE(infotext.find("Seed: " + std::to_string(7 + i)), std::string::npos) << infotext;
  }
  // The PNG carries its parameters text (read back through a file).
  const fs::path png = fs::temp_directory_path() / ("lumen-server-" + std::to_string(::getpid()) + ".png");
  std::ofstream(png, std::ios::binary) << *base64_decode(body["images"][0]);
  std::ifstream in(png, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(bytes.find("parameters"), std::string::npos);
  EXPECT_NE(bytes.find("Seed: 7"), std::string::npos);
  fs::remove(png);

  // The same seed gives the same image; a LoRA from the folder changes it.
  auto again = post(s, "/sdapi/v1/txt2img", kSmall);
  auto first = post(s, "/sdapi/v1/txt2img", kSmall);
  EXPECT_EQ(body_of(again)["images"][0], body_of(first)["images"][0]);
  json with_lora = kSmall;
  with_lora["prompt"] = kSmall["prompt"].get<std::string>() + " <lora:unifl:1>";
  auto lora = post(s, "/sdapi/v1/txt2img", with_lora);
  ASSERT_EQ(lora->status, 200) << lora->body;
  EXPECT_NE(body_of(lora)["images"][0], body_of(first)["images"][0]);
  // ... and taking it off again restores the model exactly.
  EXPECT_EQ(body_of(post(s, "/sdapi/v1/txt2img", kSmall))["images"][0], body_of(first)["images"][0]);
  // A model from the folder by title.
  json other = kSmall;
  other["override_settings"] = {{"sd_model_checkpoint", "sub/shapes"}};
  auto switched = post(s, "/sdapi/v1/txt2img", other);
  ASSERT_EQ(switched->status, 200) << switched->body;
  EXPECT_EQ(json::parse(body_of(switched)["info"].get<std::string>())["sd_model_name"], "sub/shapes");
  // For that request only (A1111's override_settings_restore_afterwards), unless it says otherwise.
  auto c = s.client();
  EXPECT_EQ(body_of(c.Get("/sdapi/v1/options"))["sd_model_checkpoint"], "lumen-default");
  EXPECT_EQ(json::parse(body_of(post(s, "/sdapi/v1/txt2img", kSmall))["info"].get<std::string>())["sd_model_name"],
            "lumen-default");
  other["override_settings_restore_afterwards"] = false;
  ASSERT_EQ(post(s, "/sdapi/v1/txt2img", other)->status, 200);
  EXPECT_EQ(body_of(c.Get("/sdapi/v1/options"))["sd_model_checkpoint"], "sub/shapes");
  other["override_settings_restore_afterwards"] = "no";
  EXPECT_EQ(post(s, "/sdapi/v1/txt2img", other)->status, 422);
}

// A switch to a broken model keeps the current one serving. It used to
// unload the current model first: after the 422 the next request reloaded it
// from disk, and failed if its files had gone meanwhile (found by probing).
TEST(Server, AFailedModelSwitchKeepsTheCurrentModel) {
  Folders f;
  fs::copy(fs::absolute("assets/default-model"), f.root / "models" / "copy", fs::copy_options::recursive);
  std::ofstream(f.root / "models" / "zero.safetensors");  // 0 bytes
  Running s(with_folders(f));
  ASSERT_EQ(post(s, "/sdapi/v1/options", {{"sd_model_checkpoint", "copy"}})->status, 200);
  fs::rename(f.root / "models" / "copy", f.root / "moved");  // its files are gone from disk
  auto refused = post(s, "/sdapi/v1/options", {{"sd_model_checkpoint", "zero.safetensors"}});
  EXPECT_EQ(refused->status, 422) << refused->body;
  auto r = post(s, "/sdapi/v1/txt2img", kSmall);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(body_of(r)["info"].get<std::string>())["sd_model_name"], "copy");
  EXPECT_EQ(body_of(s.client().Get("/sdapi/v1/options"))["sd_model_checkpoint"], "copy");
}

TEST(Server, Img2imgAndInpaintingFromBase64) {
  Folders f;
  Running s(with_folders(f));
  const std::string init = body_of(post(s, "/sdapi/v1/txt2img", kSmall))["images"][0];
  lumen::Images base = decode_png(init);
  std::vector<uint8_t> white(64 * 64 * 3, 0);
  for (size_t i = 0; i < white.size() / 2; ++i) white[i] = 255;  // repaint the top half
  lumen_image mask{64, 64, white.data(), 0, nullptr};
  uint8_t* mask_png = nullptr;
  size_t mask_size = 0;
  ASSERT_EQ(lumen_image_encode_png(&mask, &mask_png, &mask_size), LUMEN_OK);
  const std::string mask_b64 = base64_encode(std::string(reinterpret_cast<char*>(mask_png), mask_size));
  lumen_free(mask_png);

  json request = kSmall;
  request["init_images"] = {"data:image/png;base64," + init};
  request["denoising_strength"] = 0.5;
  auto r = post(s, "/sdapi/v1/img2img", request);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r)["parameters"]["init_images"], nullptr);  // not echoed back
  const std::string infotext = json::parse(body_of(r)["info"].get<std::string>())["infotexts"][0];
  EXPECT_NE(infotext.find("Denoising strength: 0.5"), std::string::npos) << infotext;
  request["mask"] = mask_b64;
  auto inpainted = post(s, "/sdapi/v1/img2img", request);
  ASSERT_EQ(inpainted->status, 200) << inpainted->body;
  const lumen::Images out = decode_png(body_of(inpainted)["images"][0]);
  // The unmasked bottom half stays close to the init image.
  double diff = 0;
  for (size_t i = white.size() / 2 + 64 * 3 * 4; i < white.size(); ++i) diff += std::abs(out[0].pixels[i] - base[0].pixels[i]);
  EXPECT_LT(diff / (white.size() / 2), 12.0);

  json bad = request;
  bad["init_images"] = {"not base64!"};
  auto r1 = post(s, "/sdapi/v1/img2img", bad);
  EXPECT_EQ(r1->status, 422);
  EXPECT_NE(body_of(r1)["detail"].get<std::string>().find("init_images[0]"), std::string::npos);
  bad["init_images"] = {base64_encode("GIF89a but not an image at all")};
  EXPECT_EQ(post(s, "/sdapi/v1/img2img", bad)->status, 422);
  bad["init_images"] = json::array();
  EXPECT_EQ(post(s, "/sdapi/v1/img2img", bad)->status, 422);
  bad = request;
  bad["mask"] = 5;
  EXPECT_EQ(post(s, "/sdapi/v1/img2img", bad)->status, 422);

  // An upload over the pixel limit is refused from its header.
  ServerOptions small = with_folders(f);
  small.limits.max_pixels = 64 * 56;
  Running limited(small);
  auto over = post(limited, "/sdapi/v1/img2img", request);
  EXPECT_EQ(over->status, 422);
  EXPECT_NE(over->body.find("over the limit"), std::string::npos) << over->body;
}

TEST(Server, RefusesHostileAndMalformedRequests) {
  Folders f;
  ServerOptions o = with_folders(f);
  o.limits.max_body_bytes = 64 * 1024;
  o.limits.max_steps = 50;
  o.limits.max_images = 4;
  Running s(o);
  auto c = s.client();
  auto expect = [&](int status, const std::string& path, const std::string& raw) {
    auto r = c.Post(path.c_str(), raw, "application/json");
    ASSERT_TRUE(r) << raw;
    EXPECT_EQ(r->status, status) << raw << " -> " << r->body;
    const json body = json::parse(r->body, nullptr, false);
    EXPECT_TRUE(body.contains("error") && body.contains("detail")) << r->body;
  };
  expect(400, "/sdapi/v1/txt2img", "{\"prompt\": ");
  expect(400, "/sdapi/v1/txt2img", "");
  expect(400, "/sdapi/v1/options", "[1,");
  expect(422, "/sdapi/v1/txt2img", "[1, 2]");
  expect(422, "/sdapi/v1/txt2img", R"({"prompt": 5})");
  expect(422, "/sdapi/v1/txt2img", R"({"steps": "20"})");
  expect(422, "/sdapi/v1/txt2img", R"({"steps": 2.5})");
  expect(422, "/sdapi/v1/txt2img", R"({"steps": 51})");
  expect(422, "/sdapi/v1/txt2img", R"({"steps": 0})");
  expect(422, "/sdapi/v1/txt2img", R"({"width": 100})");
  expect(422, "/sdapi/v1/txt2img", R"({"width": 4096, "height": 4096})");
  expect(422, "/sdapi/v1/txt2img", R"({"seed": 1e300})");
  expect(422, "/sdapi/v1/txt2img", R"({"seed": 18446744073709551615})");
  expect(422, "/sdapi/v1/txt2img", R"({"cfg_scale": -1})");
  expect(422, "/sdapi/v1/txt2img", R"({"batch_size": 3, "n_iter": 2})");
  expect(422, "/sdapi/v1/txt2img", R"({"override_settings": "x"})");
  expect(404, "/sdapi/v1/txt2img", R"({"sampler_name": "Heun"})");
  expect(413, "/sdapi/v1/txt2img", "{\"prompt\": \"" + std::string(100 * 1024, 'a') + "\"}");
  // Only listed models and LoRAs: paths, absolute or relative, reach nothing.
  for (const std::string& name : std::vector<std::string>{"../../../etc/passwd", "/etc/passwd", (f.root / "models/sub/shapes").string(),
                                 "sub/../sub/shapes", "assets/default-model"}) {
    expect(404, "/sdapi/v1/txt2img", json{{"override_settings", {{"sd_model_checkpoint", name}}}}.dump());
    expect(404, "/sdapi/v1/options", json{{"sd_model_checkpoint", name}}.dump());
  }
  for (const std::string& name : std::vector<std::string>{"../../etc/passwd", "/etc/passwd", "unifl-shapes", "../unifl-lora/unifl-shapes"})
    expect(404, "/sdapi/v1/txt2img", json{{"prompt", "x <lora:" + name + ":1>"}}.dump());
  // A listed LoRA file that is not one: a clear error, and the server goes on.
  expect(422, "/sdapi/v1/txt2img", json{{"prompt", "x <lora:broken:1>"}, {"steps", 2}}.dump());
  auto r = c.Get("/sdapi/v1/nothing-here");
  EXPECT_EQ(r->status, 404);
  auto after = post(s, "/sdapi/v1/txt2img", {{"steps", 2}});
  EXPECT_EQ(after->status, 200) << after->body;
}

TEST(Server, ApiKeyAndBasicAuth) {
  ServerOptions o;
  o.web_page = "assets/web/index.html";
  o.auth = Auth::api_key("correct horse");
  {
    Running s(o);
    auto c = s.client();
    EXPECT_EQ(c.Get("/")->status, 200);  // the page asks for the key itself
    EXPECT_EQ(c.Get("/sdapi/v1/samplers")->status, 401);
    EXPECT_EQ(c.Get("/sdapi/v1/samplers", {{"Authorization", "Bearer wrong"}})->status, 401);
    EXPECT_EQ(c.Get("/sdapi/v1/samplers", {{"Authorization", "Bearer correct horsf"}})->status, 401);
    auto denied = post(s, "/sdapi/v1/txt2img", kSmall, {{"Authorization", "Basic Y29ycmVjdCBob3JzZQ=="}});
    EXPECT_EQ(denied->status, 401);
    EXPECT_EQ(denied->get_header_value("WWW-Authenticate").rfind("Bearer", 0), 0u);
    EXPECT_EQ(c.Get("/sdapi/v1/samplers", {{"Authorization", "Bearer correct horse"}})->status, 200);
    EXPECT_EQ(post(s, "/sdapi/v1/txt2img", kSmall, {{"Authorization", "Bearer correct horse"}})->status, 200);
  }
  o.auth = Auth::basic("ann:pw1,bob:pw2");
  Running s(o);
  auto c = s.client();
  auto page = c.Get("/");
  EXPECT_EQ(page->status, 401);
  EXPECT_EQ(page->get_header_value("WWW-Authenticate").rfind("Basic", 0), 0u);
  c.set_basic_auth("bob", "pw1");
  EXPECT_EQ(c.Get("/sdapi/v1/options")->status, 401);
  c.set_basic_auth("bob", "pw2");
  EXPECT_EQ(c.Get("/sdapi/v1/options")->status, 200);
  EXPECT_EQ(c.Get("/")->status, 200);
}

TEST(Server, BurstOf50GetsImagesOr429AndNothingIsDropped) {
  ServerOptions o;
  o.queue_size = 2;
  Running s(o);
  std::vector<std::future<std::pair<int, size_t>>> replies;
  for (int i = 0; i < 50; ++i)
    replies.push_back(std::async(std::launch::async, [&s, i] {
      json request = kSmall;
      request["seed"] = i;
      request["steps"] = 8;
      auto r = post(s, "/sdapi/v1/txt2img", request);
      if (!r) {
        std::printf("request %d: no answer (%s)\n", i, httplib::to_string(r.error()).c_str());
        return std::make_pair(-1, size_t{0});
      }
      const json body = json::parse(r->body, nullptr, false);
      return std::make_pair(r->status, r->status == 200 ? body["images"].size() : size_t{0});
    }));
  int ok = 0, full = 0;
  for (auto& reply : replies) {
    const auto [status, images] = reply.get();
    if (status == 200) {
      ++ok;
      EXPECT_EQ(images, 1u);
    } else {
      EXPECT_EQ(status, 429);
      ++full;
    }
  }
  std::printf("burst of 50: %d images, %d refused with 429\n", ok, full);
  EXPECT_EQ(ok + full, 50);
  EXPECT_GE(ok, 3);  // the running job and a full queue
  EXPECT_GE(full, 1);
}

// Idle connections each hold a handler until the read timeout. Fifty of them (a
// careless client pool, or a hostile one) once delayed /progress by 10 s (200:
// 55 s); now it is answered within the client's 3 s read timeout.
TEST(Server, IdleConnectionsDoNotStarveProgress) {
  Running s(ServerOptions{});
  std::vector<int> idle;
  for (int i = 0; i < 50; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(s.port()));
    ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    idle.push_back(fd);
  }
  auto c = s.client();
  c.set_read_timeout(3);
  const auto r = c.Get("/sdapi/v1/progress");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  for (int fd : idle) ::close(fd);
}

namespace {
int connect_raw(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  return ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 ? fd : -1;
}

// Whether `answer` holds a whole response: its headers and Content-Length bytes.
bool complete_response(const std::string& answer) {
  const size_t end = answer.find("\r\n\r\n");
  const size_t length = answer.find("Content-Length: ");
  if (end == std::string::npos || length == std::string::npos || length > end) return false;
  return answer.size() >= end + 4 + std::stoul(answer.substr(length + 16));
}

// Sends `head`, then the body a byte every 0.4 s until the server answers or
// closes; returns what it answered and how long that took.
std::pair<std::string, double> trickle(int port, const std::string& head, double give_up_seconds) {
  const int fd = connect_raw(port);
  if (fd < 0) return {"(no connection)", 0};
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  std::string answer;
  while (elapsed() < give_up_seconds) {
    ::send(fd, "x", 1, MSG_NOSIGNAL);
    timeval wait{0, 400000};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) answer.append(buffer, static_cast<size_t>(n));
    if (n == 0 || complete_response(answer)) break;
  }
  const double took = elapsed();
  ::close(fd);
  return {answer, took};
}
}  // namespace

// A body trickled a byte at a time (each within the 2 s read timeout) once
// held a handler for as long as its Content-Length allowed: 100,000 bytes,
// 55 hours. It must now arrive within the grace period plus its size at
// 32 KiB/s, or the client gets 408.
TEST(Server, TrickledBodiesAreCutOff) {
  ServerOptions o;
  o.limits.body_grace_seconds = 1;
  Running s(o);
  for (const char* path : {"/sdapi/v1/txt2img", "/sdapi/v1/interrupt"}) {
    const auto [answer, took] = trickle(
        s.port(), std::string("POST ") + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 20);
    EXPECT_NE(answer.find(" 408 "), std::string::npos) << path << ": " << answer;
    EXPECT_LT(took, 6) << path;
  }
  // A body on an endpoint that takes none is not read at all.
  const auto [answer, took] =
      trickle(s.port(), "GET /sdapi/v1/progress HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 20);
  EXPECT_NE(answer.find(" 400 "), std::string::npos) << answer;
  EXPECT_NE(answer.find("takes no request body"), std::string::npos) << answer;
  EXPECT_LT(took, 3);
  // A POST with neither Content-Length nor Transfer-Encoding has no body
  // (`curl -X POST`): answered at once, not after waiting for more.
  const auto [bare, bare_took] = trickle(s.port(), "POST /sdapi/v1/interrupt HTTP/1.1\r\nHost: x\r\n\r\n", 20);
  EXPECT_NE(bare.find(" 200 "), std::string::npos) << bare;
  EXPECT_LT(bare_took, 1.5);
  // Bodies sent at once still work.
  EXPECT_EQ(post(s, "/sdapi/v1/txt2img", kSmall)->status, 200);
}

TEST(Server, InterruptEndsTheRunningJobAndTheServerGoesOn) {
  ServerOptions o;
  o.limits.max_steps = 1000;
  Running s(o);
  json slow = kSmall;
  slow["steps"] = 1000;
  slow["n_iter"] = 2;
  auto reply = std::async(std::launch::async, [&] { return post(s, "/sdapi/v1/txt2img", slow); });
  auto c = s.client();
  json progress;
  for (int i = 0; i < 600; ++i) {
    progress = body_of(c.Get("/sdapi/v1/progress"));
    if (progress["state"]["sampling_step"].get<int>() >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(progress["state"]["sampling_step"].get<int>(), 2) << progress.dump();
  EXPECT_EQ(progress["state"]["sampling_steps"], 1000);
  EXPECT_EQ(progress["state"]["job_count"], 2);
  EXPECT_GT(progress["progress"].get<double>(), 0.0);
  EXPECT_LT(progress["progress"].get<double>(), 0.5);
  EXPECT_EQ(c.Post("/sdapi/v1/interrupt")->status, 200);
  auto r = reply.get();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(body_of(r)["images"].size(), 0u);
  EXPECT_EQ(json::parse(body_of(r)["info"].get<std::string>())["interrupted"], true);
  EXPECT_EQ(body_of(c.Get("/sdapi/v1/progress"))["state"]["job"], "");
  EXPECT_EQ(post(s, "/sdapi/v1/txt2img", kSmall)->status, 200);
}

TEST(Server, ShutdownAnswersTheRunningAndWaitingClients) {
  ServerOptions o;
  o.limits.max_steps = 1000;
  auto s = std::make_unique<Running>(o);
  json slow = kSmall;
  slow["steps"] = 1000;
  auto running = std::async(std::launch::async, [&] { return post(*s, "/sdapi/v1/txt2img", slow); });
  auto c = s->client();
  for (int i = 0; i < 600 && body_of(c.Get("/sdapi/v1/progress"))["state"]["sampling_step"].get<int>() < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto waiting = std::async(std::launch::async, [&] { return post(*s, "/sdapi/v1/txt2img", slow); });
  for (int i = 0; i < 600 && body_of(c.Get("/sdapi/v1/progress"))["state"]["queued"].get<int>() < 1; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto start = std::chrono::steady_clock::now();
  s->stop();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto* reply : {&running, &waiting}) {
    auto r = reply->get();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_EQ(body_of(r)["error"], "shutting down");
  }
  EXPECT_LT(seconds, 30.0);
  EXPECT_FALSE(c.Get("/sdapi/v1/progress"));  // no longer listening
}
