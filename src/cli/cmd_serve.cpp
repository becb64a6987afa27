// `lumen serve`: the HTTP server (src/server) with a graceful end on
// SIGINT/SIGTERM: a second signal quits at once.
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "cli/commands.h"
#include "error.h"
#include "runtime.h"
#include "server/http_server.h"

namespace lumen::cli {
namespace {

int g_signal_pipe[2] = {-1, -1};

void on_signal(int) {
  const char byte = 1;
  if (write(g_signal_pipe[1], &byte, 1) < 0) _exit(130);  // async-signal-safe only
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

Runner add_serve_command(CLI::App& app) {
  struct Options {
    server::ServerOptions server;
    std::string api_key, api_auth;
    double max_body_mb = 64;
  };
  auto opt = std::make_shared<Options>();
  auto& s = opt->server;
  auto* cmd = app.add_subcommand("serve", "Serve AUTOMATIC1111's HTTP API (/sdapi/v1/...) and a web page at /");
  cmd->add_option("--host", s.host, "address to listen on (other machines can reach anything but loopback)")
      ->capture_default_str();
  cmd->add_option("--port", s.port, "port; 0 picks a free one")->check(CLI::Range(0, 65535))->capture_default_str();
  cmd->add_option("--models-dir", s.models_dir, "folder of checkpoints (.safetensors, diffusers folders) offered");
  cmd->add_option("--lora-dir", s.lora_dir, "folder of LoRAs (.safetensors) that <lora:NAME:W> may name");
  cmd->add_option("--model", s.model, "model to load at start: a title from --models-dir (default: the embedded one)");
  cmd->add_option("--api-key", opt->api_key, "require 'Authorization: Bearer KEY' on /sdapi/ (also $LUMEN_API_KEY)");
  cmd->add_option("--api-auth", opt->api_auth, "require HTTP basic auth, USER:PASS[,USER:PASS...] (as A1111)");
  cmd->add_option("--queue-size", s.queue_size, "jobs that may wait besides the running one; more get 429")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("--max-body-mb", opt->max_body_mb, "largest request body")->check(CLI::Range(0.001, 4096.0))->capture_default_str();
  cmd->add_option("--max-pixels", s.limits.max_pixels, "largest width·height")->check(CLI::Range(64, 1 << 28))->capture_default_str();
  cmd->add_option("--max-steps", s.limits.max_steps, "most sampler steps")->check(CLI::Range(1, 10000))->capture_default_str();
  cmd->add_option("--max-batch", s.limits.max_images, "most images per request (batch_size·n_iter)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  return [opt, cmd]() {
    if (!*cmd) return -1;
    auto& o = opt->server;
    if (const char* key = std::getenv("LUMEN_API_KEY"); key && opt->api_key.empty()) opt->api_key = key;
    if (!opt->api_key.empty() && !opt->api_auth.empty()) throw lumen::Error("--api-key", "give --api-key or --api-auth, not both");
    if (!opt->api_key.empty()) o.auth = server::Auth::api_key(opt->api_key);
    if (!opt->api_auth.empty()) o.auth = server::Auth::basic(opt->api_auth);
    o.limits.max_body_bytes = static_cast<size_t>(opt->max_body_mb * 1024 * 1024);
    o.web_page = asset_path("web/index.html");
    o.access_log = true;
    if (!is_loopback(o.host) && o.auth.open())
      std::cerr << "warning: serving on " << o.host << " without --api-key or --api-auth: anyone who can reach it may use it\n";

    if (pipe(g_signal_pipe) != 0) throw lumen::Error("serve", "cannot create the signal pipe");
    server::Server server(o);
    const int port = server.bind();
    std::thread watcher([&server] {
      char byte = 0;
      if (read(g_signal_pipe[0], &byte, 1) == 1 && byte == 1) {
        std::cerr << "lumen serve: shutting down (a second signal quits at once)\n";
        std::signal(SIGINT, SIG_DFL);
        std::signal(SIGTERM, SIG_DFL);
        server.shutdown();
      }
    });
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::cout << "lumen serve: listening on http://" << (o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host)
              << ":" << port << std::endl;
    server.serve();
    const char quit = 0;  // wakes the watcher if serve() ended without a signal
    [[maybe_unused]] const ssize_t written = write(g_signal_pipe[1], &quit, 1);
    watcher.join();
    std::cerr << "lumen serve: stopped\n";
    return 0;
  };
}

}  // namespace lumen::cli
