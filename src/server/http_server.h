// `lumen serve`: AUTOMATIC1111's HTTP API (/sdapi/v1/...) and the web page,
// over cpp-httplib. Requests wait in a bounded job queue for the one model;
// see docs/server.md.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "server/a1111_request.h"
#include "server/auth.h"

namespace lumen::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 7860;  // 0: any free port
  std::string models_dir, lora_dir;
  std::string model;     // the model loaded at start (a title); "": the embedded default
  std::string web_page;  // index.html served at /
  Auth auth;
  Limits limits;
  size_t queue_size = 8;  // jobs waiting besides the running one
  int threads = 0;        // LibTorch threads; 0: the library's choice
  bool access_log = false;  // a line per request on stderr: client, method, path, status
};

class Server {
 public:
  explicit Server(ServerOptions options);  // loads the model; throws on a bad option or model
  ~Server();
  // Binds the socket and returns the port (throws if it cannot).
  int bind();
  // Serves until shutdown(); returns once every client has been answered.
  void serve();
  // Graceful: refuses new jobs (503), cancels the running and waiting ones
  // (their clients get 503), stops listening. Any thread; idempotent.
  void shutdown();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace lumen::server
