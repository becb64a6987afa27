// TensorBoard event files (TFRecord framing of tensorboard.Event protos), so
// `tensorboard --logdir runs/` shows a training run live: scalars (losses,
// rewards, learning rate, judged rates) and images (the sample grids).
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace lumen::train {

class TensorBoardWriter {
 public:
  // Starts DIR/events.out.tfevents.<seconds>.<host>.<pid> with the file-version event.
  explicit TensorBoardWriter(const std::string& dir);
  void scalar(const std::string& tag, double value, int64_t step);
  void image_png(const std::string& tag, const std::string& png_bytes, int width, int height, int64_t step);
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& serialized_event);
  std::string path_;
  std::ofstream out_;
};

// The records of an event file, each checked against its two CRC-32Cs
// (lumen::Error naming the file on a bad length or checksum).
std::vector<std::string> read_tfrecords(const std::string& path);

// TFRecord's masked CRC-32C (Castagnoli) of `size` bytes.
uint32_t masked_crc32c(const void* data, size_t size);

}  // namespace lumen::train
