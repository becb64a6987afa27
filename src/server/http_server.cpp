#include "server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/json_output.h"
#include "samplers/a1111_names.h"
#include "server/api_error.h"
#include "server/generator.h"
#include "server/job_queue.h"
#include "server/model_registry.h"

namespace lumen::server {
namespace {

using nlohmann::json;

// Spare handler threads beside those a full queue holds waiting: progress,
// interrupt and the 429s must still be answered then, also while idle
// connections each hold a handler until the read timeout (measured: with 8
// spares and cpp-httplib's 5 s, 50 idle sockets delayed /progress by 10 s and
// 200 by 55 s). A sleeping thread costs little.
constexpr size_t kSpareHandlers = 64;
constexpr int kReadTimeoutSeconds = 2;  // between received bytes, and for an idle kept-alive connection

void send_json(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_content(dump_for_output(body), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& kind, const std::string& detail) {
  send_json(res, {{"error", kind}, {"detail", detail}}, status);
}

// Reads a POST body through httplib's content reader rather than letting the
// library read it whole: the library's only bound is the 2 s between bytes,
// so a body trickled a byte at a time held a handler for as long as its
// Content-Length allowed. Here it must arrive within the limits' deadline.
std::string read_body(const httplib::Request& req, const httplib::ContentReader& reader, const Limits& limits) {
  // RFC 9112 6.3: a request with neither header has no body (`curl -X POST`);
  // httplib would wait for the connection to close.
  if (!req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) return "";
  const auto start = std::chrono::steady_clock::now();
  std::string body;
  bool late = false, too_large = false;
  const bool complete = reader([&](const char* data, size_t n) {
    if (body.size() + n > limits.max_body_bytes) return !(too_large = true);
    body.append(data, n);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    late = elapsed > limits.body_grace_seconds + static_cast<double>(body.size()) / limits.min_body_bytes_per_second;
    return !late;
  });
  // httplib stops reading at its payload limit (the same max_body_bytes) itself.
  too_large = too_large || (req.has_header("Content-Length") &&
                            std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10) > limits.max_body_bytes);
  if (too_large) throw ApiError(413, "too large", "the request body is over the server's limit");
  if (late)
    throw ApiError(408, "request timeout",
                   "the request body arrived too slowly (" + std::to_string(body.size()) + " bytes so far)");
  if (!complete) throw ApiError(400, "bad request", "the request body ended early");
  return body;
}

json parse_body(const std::string& text) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) throw ApiError(400, "malformed JSON", "the request body is not valid JSON");
  return body;
}

std::string string_or(const json& body, const char* name) {
  const auto it = body.find(name);
  return it != body.end() && it->is_string() ? it->get<std::string>() : "";
}

std::string read_page(const std::string& path) {
  if (path.empty()) return "<!doctype html><title>Lumen</title><p>The web page is not installed.";
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot read the web page");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
  return buf;
}

// httplib listens with a backlog of 5: a burst of clients would see resets.
// Listening again on the bound socket widens it (Linux allows that).
class HttpServer : public httplib::Server {
 public:
  void widen_backlog(int backlog) {
    if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, backlog);
  }
};

}  // namespace

struct Server::State {
  explicit State(ServerOptions o)
      : options(std::move(o)),
        registry(options.models_dir, options.lora_dir),
        generator(registry, options.threads),
        queue(options.queue_size),
        page(read_page(options.web_page)) {}

  ServerOptions options;
  ModelRegistry registry;
  Generator generator;
  JobQueue queue;
  std::string page;
  HttpServer http;

  void routes();
  bool authorized(const httplib::Request& req) const;
  void generate(const std::string& body_text, httplib::Response& res, bool img2img);
  // A POST endpoint; its handler gets the body, read within the deadline.
  void post(const char* path, std::function<void(const std::string& body, httplib::Response&)> handler);
  // Runs `work` as a queued job; 429 / 503 when it cannot be queued.
  void run_job(const std::string& kind, const std::function<void(JobControl&)>& work);
};

bool Server::State::authorized(const httplib::Request& req) const {
  if (options.auth.open()) return true;
  // With an API key the page itself is public: it asks for the key.
  if (!options.auth.basic_mode() && req.path.rfind("/sdapi/", 0) != 0) return true;
  return options.auth.allows(req.get_header_value("Authorization"));
}

void Server::State::run_job(const std::string& kind, const std::function<void(JobControl&)>& work) {
  switch (queue.run(kind, work)) {
    case JobQueue::Admission::Ran: return;
    case JobQueue::Admission::Full:
      throw ApiError(429, "queue full", "the job queue is full (" + std::to_string(options.queue_size) +
                                            " waiting); try again later");
    case JobQueue::Admission::Closed: throw ApiError(503, "shutting down", "the server is shutting down");
  }
}

void Server::State::post(const char* path, std::function<void(const std::string&, httplib::Response&)> handler) {
  http.Post(path, [this, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res,
                                                       const httplib::ContentReader& reader) {
    handler(read_body(req, reader, options.limits), res);
  });
}

void Server::State::generate(const std::string& body_text, httplib::Response& res, bool img2img) {
  json body = parse_body(body_text);
  GenerationRequest request = parse_generation_request(body, img2img, options.limits);
  decode_uploads(request, options.limits.max_pixels);
  GenerationOutcome outcome;
  std::optional<ApiError> error;
  bool shutting_down = false;
  run_job(img2img ? "img2img" : "txt2img", [&](JobControl& control) {
    try {
      outcome = generator.generate(request, control);
    } catch (const ApiError& e) {
      error = e;
    } catch (const std::exception& e) {
      error = ApiError(500, "internal error", e.what());
    }
    shutting_down = control.shutting_down();
  });
  if (error) throw *error;
  if (outcome.interrupted && shutting_down)
    throw ApiError(503, "shutting down", "the server is shutting down; the job was cancelled");

  const size_t n = outcome.seeds.size();
  const std::string prompt = string_or(body, "prompt");
  const std::string negative = string_or(body, "negative_prompt");
  json info = {{"prompt", prompt},
               {"all_prompts", json::array()},
               {"negative_prompt", negative},
               {"all_negative_prompts", json::array()},
               {"seed", outcome.first_seed},
               {"all_seeds", outcome.seeds},
               {"subseed", -1},
               {"all_subseeds", json::array()},
               {"batch_size", request.batch_size},
               {"sd_model_name", outcome.model},
               {"sampler_name", request.sampler.empty() ? json() : json(samplers::a1111_sampler_name(request.sampler))},
               {"infotexts", outcome.infotexts},
               {"job_timestamp", timestamp()},
               {"interrupted", outcome.interrupted}};
  for (size_t i = 0; i < n; ++i) {
    info["all_prompts"].push_back(prompt);
    info["all_negative_prompts"].push_back(negative);
    info["all_subseeds"].push_back(-1);
  }
  // A1111 echoes the request without its images.
  if (img2img) {
    body["init_images"] = nullptr;
    body["mask"] = nullptr;
  }
  const std::string info_text = dump_for_output(info);
  send_json(res, {{"images", outcome.png_base64}, {"parameters", body}, {"info", info_text}});
}

void Server::State::routes() {
  http.Get("/", [this](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'");
    res.set_content(page, "text/html; charset=utf-8");
  });
  post("/sdapi/v1/txt2img", [this](const std::string& body, httplib::Response& res) { generate(body, res, false); });
  post("/sdapi/v1/img2img", [this](const std::string& body, httplib::Response& res) { generate(body, res, true); });
  http.Get("/sdapi/v1/progress", [this](const httplib::Request&, httplib::Response& res) {
    const JobProgress p = queue.progress();
    const double eta = p.fraction > 0 ? p.elapsed_seconds / p.fraction - p.elapsed_seconds : 0;
    send_json(res, {{"progress", p.fraction},
                    {"eta_relative", eta},
                    {"state",
                     {{"skipped", false},
                      {"interrupted", p.interrupted},
                      {"job", p.job},
                      {"job_count", p.job_count},
                      {"job_timestamp", "0"},
                      {"job_no", p.job_no},
                      {"sampling_step", p.step},
                      {"sampling_steps", p.steps},
                      {"queued", p.queued}}},
                    {"current_image", nullptr},
                    {"textinfo", nullptr}});
  });
  post("/sdapi/v1/interrupt", [this](const std::string&, httplib::Response& res) {
    queue.interrupt();
    send_json(res, json::object());
  });
  http.Get("/sdapi/v1/options", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, {{"sd_model_checkpoint", generator.selected_title()}, {"samples_format", "png"}});
  });
  post("/sdapi/v1/options", [this](const std::string& text, httplib::Response& res) {
    const json body = parse_body(text);
    if (!body.is_object()) throw ApiError(422, "invalid request", "the body must be a JSON object");
    const auto it = body.find("sd_model_checkpoint");
    if (it != body.end() && !it->is_null()) {
      if (!it->is_string()) throw ApiError(422, "invalid request", "sd_model_checkpoint: must be a string");
      const std::string name = it->get<std::string>();
      if (!registry.find_model(name))
        throw ApiError(404, "not found", "model '" + name + "' not found (GET /sdapi/v1/sd-models lists them)");
      std::optional<ApiError> error;
      run_job("load model", [&](JobControl&) {
        try {
          generator.select(name);
        } catch (const ApiError& e) {
          error = e;
        }
      });
      if (error) throw *error;
    }
    send_json(res, json::object());  // other options are A1111's UI settings: ignored
  });
  http.Get("/sdapi/v1/sd-models", [this](const httplib::Request&, httplib::Response& res) {
    json out = json::array();
    for (const auto& m : registry.models())
      out.push_back({{"title", m.title},
                     {"model_name", m.model_name},
                     {"hash", nullptr},
                     {"sha256", nullptr},
                     {"filename", m.path.empty() ? "(embedded)" : m.path},
                     {"config", nullptr}});
    send_json(res, out);
  });
  http.Get("/sdapi/v1/samplers", [](const httplib::Request&, httplib::Response& res) {
    json out = json::array();
    for (const auto& s : samplers::a1111_samplers()) out.push_back({{"name", s.a1111}, {"aliases", s.aliases}, {"options", json::object()}});
    send_json(res, out);
  });
  http.Get("/sdapi/v1/loras", [this](const httplib::Request&, httplib::Response& res) {
    json out = json::array();
    for (const auto& l : registry.loras())
      out.push_back({{"name", l.name}, {"alias", l.name}, {"path", l.path}, {"metadata", json::object()}});
    send_json(res, out);
  });
  post("/sdapi/v1/refresh-checkpoints", [this](const std::string&, httplib::Response& res) {
    registry.refresh_models();
    send_json(res, json::object());
  });
  post("/sdapi/v1/refresh-loras", [this](const std::string&, httplib::Response& res) {
    registry.refresh_loras();
    send_json(res, json::object());
  });
}

Server::Server(ServerOptions options) : state_(std::make_unique<State>(std::move(options))) {
  State& s = *state_;
  s.generator.select(s.options.model.empty() ? ModelRegistry::kDefaultTitle : s.options.model);
  const size_t handlers = s.options.queue_size + 1 + kSpareHandlers;
  s.http.new_task_queue = [handlers] { return new httplib::ThreadPool(handlers); };
  s.http.set_payload_max_length(s.options.limits.max_body_bytes);
  s.http.set_read_timeout(kReadTimeoutSeconds, 0);
  s.http.set_keep_alive_timeout(kReadTimeoutSeconds);
  s.http.set_pre_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    if (!s.authorized(req)) {
      res.set_header("WWW-Authenticate", s.options.auth.challenge());
      send_error(res, 401, "unauthorized", "missing or wrong credentials");
      return httplib::Server::HandlerResponse::Handled;
    }
    // Only POST bodies are read within a deadline (read_body); no other
    // endpoint takes one, so none is read at all.
    const bool has_body = req.has_header("Transfer-Encoding") || (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
    if (req.method != "POST" && has_body) {
      send_error(res, 400, "bad request", req.method + " " + req.path + " takes no request body");
      res.set_header("Connection", "close");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const ApiError& e) {
      send_error(res, e.status, e.kind, e.what());
    } catch (const std::exception& e) {
      send_error(res, 500, "internal error", e.what());
    }
  });
  // httplib's own errors (no route, body too large) get the same JSON shape.
  s.http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) send_error(res, 404, "not found", "no endpoint " + req.method + " " + req.path);
    else if (res.status == 413) send_error(res, 413, "too large", "the request body is over the server's limit");
    else send_error(res, res.status, "error", "the request failed (HTTP " + std::to_string(res.status) + ")");
  });
  if (s.options.access_log)
    s.http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      std::fprintf(stderr, "%s %s %s %d\n", req.remote_addr.c_str(), req.method.c_str(), req.path.c_str(), res.status);
    });
  s.routes();
}

Server::~Server() { shutdown(); }

int Server::bind() {
  State& s = *state_;
  if (s.options.port == 0) {
    const int port = s.http.bind_to_any_port(s.options.host);
    if (port < 0) throw std::runtime_error(s.options.host + ": cannot bind to a free port");
    s.http.widen_backlog(SOMAXCONN);
    return port;
  }
  if (!s.http.bind_to_port(s.options.host, s.options.port))
    throw std::runtime_error(s.options.host + ":" + std::to_string(s.options.port) +
                             ": cannot bind (in use, or not an address of this machine)");
  s.http.widen_backlog(SOMAXCONN);
  return s.options.port;
}

void Server::serve() { state_->http.listen_after_bind(); }

void Server::shutdown() {
  state_->queue.shutdown();
  state_->http.stop();
}

}  // namespace lumen::server
