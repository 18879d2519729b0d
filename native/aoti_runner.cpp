// Forward latency of an AOTInductor package (.pt2, from `leaps-engine export --format aoti`) in libtorch,
// without Python. Optionally checks the logits against a reference and dumps them.
// Prints one Markdown line last: | LABEL | TxHxW | batch B | aoti (libtorch, cpu) | forward median ... |

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "timing.h"

namespace {

const char* const kUsage =
    "usage: aoti_runner --package P.pt2 --shape B,3,T,H,W [--label NAME] [--iters 20] [--warmup 3]\n"
    "                   [--input FILE] [--expected FILE [--rtol 1e-4] [--atol 1e-5]] [--dump FILE]\n"
    "FILEs are raw little-endian float32 in C order: --input has the given shape, --expected and --dump\n"
    "hold the first output (logits [B, K]). Without --input the video is seeded random noise.\n";

at::Tensor first_output(torch::inductor::AOTIModelPackageLoader& loader, const at::Tensor& video) {
  std::vector<at::Tensor> outputs = loader.run({video});
  if (outputs.empty()) throw std::runtime_error("the package returned no outputs");
  return outputs.front().to(at::kFloat).contiguous();
}

// The package itself does not check its input (a wrong T, H or W reads out of bounds), so check --shape
// against the sidecar <package>.json that `leaps-engine export` writes: "input": {"shape": ["batch", 3, T, H, W],
// "dtype": "float32", "batch": [min, max]}. Without a sidecar the shape is taken as given.
void check_input(const std::string& package, const std::string& shape_text, const std::vector<int64_t>& shape) {
  const std::string path = package + ".json";
  if (!std::filesystem::is_regular_file(path)) return;
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  const std::string json = text.str();
  std::smatch input, dims, dtype, batch;
  const std::regex input_regex(R"re("input"\s*:\s*\{([^}]*)\})re");
  const std::regex dims_regex(R"re("shape"\s*:\s*\[\s*"batch"\s*,\s*3\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\])re");
  const std::regex dtype_regex(R"re("dtype"\s*:\s*"(\w+)")re");
  const std::regex batch_regex(R"re("batch"\s*:\s*\[\s*(\d+)\s*,\s*(\d+)\s*\])re");
  if (!std::regex_search(json, input, input_regex)) throw leaps::UsageError("no input description in " + path);
  const std::string block = input[1];
  if (!std::regex_search(block, dims, dims_regex) || !std::regex_search(block, dtype, dtype_regex) ||
      !std::regex_search(block, batch, batch_regex))
    throw leaps::UsageError("no input shape, dtype and batch range in " + path);
  if (dtype.str(1) != "float32")
    throw leaps::UsageError("the package takes " + dtype.str(1) + " input; aoti_runner feeds float32 (" + path + ")");
  const int64_t low = std::stoll(batch[1]), high = std::stoll(batch[2]);
  const bool fits = shape[0] >= low && shape[0] <= high && shape[2] == std::stoll(dims[1]) &&
                    shape[3] == std::stoll(dims[2]) && shape[4] == std::stoll(dims[3]);
  if (!fits)
    throw leaps::UsageError("--shape " + shape_text + " does not fit the package: its input is B,3," + dims.str(1) +
                            "," + dims.str(2) + "," + dims.str(3) + " with B in " + batch.str(1) + ".." +
                            batch.str(2) + " (" + path + ")");
}

// Throws (exit 1, one line) if the logits differ from the reference file; otherwise says how close they are.
void check_expected(const at::Tensor& logits, const std::string& path, double rtol, double atol) {
  std::vector<float> values = leaps::read_floats(path, logits.numel(), "expected logits");
  const at::Tensor expected = at::from_blob(values.data(), logits.sizes(), at::kFloat);
  const double max_abs = (logits - expected).abs().max().item<double>();
  if (!at::allclose(logits, expected, rtol, atol)) {
    std::ostringstream message;
    message << "logits differ from " << path << ": max abs error " << max_abs << " (rtol " << rtol << ", atol "
            << atol << ")";
    throw std::runtime_error(message.str());
  }
  std::cout << "parity: logits match " << path << ", max abs error " << max_abs << "\n";
}

int run(int argc, char** argv) {
  const leaps::Options options = leaps::parse_options(
      argc, argv,
      {"--package", "--shape", "--label", "--iters", "--warmup", "--input", "--expected", "--rtol", "--atol", "--dump"},
      kUsage);
  const std::string package = leaps::required(options, "--package");
  const std::string shape_text = leaps::required(options, "--shape");
  const std::vector<int64_t> shape = leaps::parse_shape(shape_text);
  const std::string label = leaps::option(options, "--label", leaps::file_stem(package));
  const int iters = leaps::to_count(leaps::option(options, "--iters", "20"), "--iters", 1);
  const int warmup = leaps::to_count(leaps::option(options, "--warmup", "3"), "--warmup", 0);
  const std::string expected = leaps::option(options, "--expected", "");
  const double rtol = leaps::to_tolerance(leaps::option(options, "--rtol", "1e-4"), "--rtol");
  const double atol = leaps::to_tolerance(leaps::option(options, "--atol", "1e-5"), "--atol");
  leaps::require_file(package, "package");
  if (!expected.empty()) leaps::require_file(expected, "expected logits");
  check_input(package, shape_text, shape);

  c10::InferenceMode inference_mode;
  at::Tensor video;
  if (options.contains("--input")) {
    std::vector<float> values = leaps::read_floats(options.at("--input"), leaps::element_count(shape), "input");
    video = at::from_blob(values.data(), shape, at::kFloat).clone();
  } else {
    at::manual_seed(0);
    video = at::randn(shape, at::kFloat);
  }

  torch::inductor::AOTIModelPackageLoader loader(package);

  // One checked run first: the logits for --expected and --dump.
  const at::Tensor logits = first_output(loader, video);
  if (!expected.empty()) check_expected(logits, expected, rtol, atol);
  if (options.contains("--dump")) leaps::write_floats(options.at("--dump"), logits.data_ptr<float>(), logits.numel());

  std::vector<double> times_ms;
  for (int i = 0; i < warmup + iters; ++i) {
    const auto start = std::chrono::steady_clock::now();
    loader.run({video});
    const auto stop = std::chrono::steady_clock::now();
    if (i >= warmup) times_ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  std::cout << leaps::summary_line(label, shape, "aoti (libtorch, cpu)", times_ms) << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return leaps::guarded_main([&] { return run(argc, argv); });
}
