// A C++ app on the installed Lumen package, through lumen.hpp (RAII and
// exceptions over the C API): two images of one prompt, the second cancelled
// half-way to show the callback.
//   cpp_app [-m MODEL] "PROMPT" OUT.png
#include <lumen/lumen.hpp>

#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
  std::string model, prompt, out;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-m") == 0 && i + 1 < argc) model = argv[++i];
    else if (prompt.empty()) prompt = argv[i];
    else out = argv[i];
  }
  if (prompt.empty() || out.empty()) {
    std::cerr << "usage: " << argv[0] << " [-m MODEL] PROMPT OUT.png\n";
    return 2;
  }
  try {
    lumen_context_params cp = lumen_context_default_params();
    cp.threads = 1;
    lumen::Context ctx(model, cp);
    lumen::GenerationParams p;
    p.prompt = prompt;
    p.seed = 1000;
    lumen::Images images = ctx.generate(p);
    images.write_png(0, out);
    std::cout << out << " (" << images[0].width << "x" << images[0].height << ")\n" << images[0].parameters << "\n";
    p.progress = [](int step, int total) { return step < total / 2; };  // false: cancel
    try {
      ctx.generate(p);
      std::cerr << "error: the cancelled generation finished\n";
      return 1;
    } catch (const lumen::Exception& e) {
      if (e.status() != LUMEN_ERR_CANCELLED) throw;
      std::cout << "cancelled: " << e.what() << "\n";
    }
  } catch (const lumen::Exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
