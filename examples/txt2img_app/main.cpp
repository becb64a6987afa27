// A minimal app on the installed Lumen package: txt2img with a progress line.
//   txt2img_app MODEL "PROMPT" OUT.png
#include <lumen.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " MODEL PROMPT OUT.png\n";
    return 2;
  }
  try {
    lumen::set_threads(0);
    auto model = std::make_shared<lumen::LoadedModel>(lumen::load_model(argv[1]));
    lumen::Pipeline pipeline(model);
    lumen::GenerationOptions options;
    options.prompt = argv[2];
    options.steps = 8;
    options.width = options.height = 64;
    options.on_step = [](int64_t step, int64_t total, const torch::Tensor&) {
      std::cerr << "\rstep " << step + 1 << "/" << total << std::flush;
    };
    auto result = pipeline.generate(options);
    std::cerr << "\n";
    auto bytes = (result.images[0] * 255).round().clamp(0, 255).to(torch::kUInt8).contiguous();
    lumen::RgbImage image{static_cast<int>(bytes.size(1)), static_cast<int>(bytes.size(0)),
                          std::vector<uint8_t>(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel())};
    lumen::write_png(argv[3], image, {{"parameters", options.prompt}}, /*overwrite=*/false);
    std::cout << argv[3] << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
