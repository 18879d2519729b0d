// Forward latency of a serialized TensorRT engine (.plan) on the GPU, TensorRT 10.x C++ API.
// Times enqueueV3 with CUDA events, input already on the device.
// Prints one Markdown line last: | LABEL | TxHxW | batch B | tensorrt X.Y.Z | forward median ... |

#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "timing.h"

namespace {

const char* const kUsage =
    "usage: trt_runner --engine FILE.plan --shape B,3,T,H,W [--input-name video] [--label NAME]\n"
    "                  [--iters 20] [--warmup 3]\n"
    "The input (float32) is seeded random noise, copied to the GPU once; each forward is one enqueueV3.\n";

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "tensorrt: " << message << "\n";
  }
};

void check_cuda(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) throw std::runtime_error(what + ": " + cudaGetErrorString(status));
}

// A cudaMalloc'ed buffer, freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) { check_cuda(cudaMalloc(&data_, bytes), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return data_; }

 private:
  void* data_ = nullptr;
};

std::size_t element_size(nvinfer1::DataType type) {
  switch (type) {
    case nvinfer1::DataType::kFLOAT:
    case nvinfer1::DataType::kINT32:
      return 4;
    case nvinfer1::DataType::kHALF:
    case nvinfer1::DataType::kBF16:
      return 2;
    case nvinfer1::DataType::kINT8:
    case nvinfer1::DataType::kUINT8:
    case nvinfer1::DataType::kBOOL:
    case nvinfer1::DataType::kFP8:
      return 1;
    case nvinfer1::DataType::kINT64:
      return 8;
    default:
      throw std::runtime_error("unsupported tensor data type " + std::to_string(static_cast<int>(type)));
  }
}

std::string runtime_version() {
  const int version = getInferLibVersion();  // TensorRT 10: major * 10000 + minor * 100 + patch
  return std::to_string(version / 10000) + "." + std::to_string(version / 100 % 100) + "." +
         std::to_string(version % 100);
}

int run(int argc, char** argv) {
  const leaps::Options options = leaps::parse_options(
      argc, argv, {"--engine", "--shape", "--input-name", "--label", "--iters", "--warmup"}, kUsage);
  const std::string engine_path = leaps::required(options, "--engine");
  const std::string shape_text = leaps::required(options, "--shape");
  const std::vector<int64_t> shape = leaps::parse_shape(shape_text);
  const std::string input_name = leaps::option(options, "--input-name", "video");
  const std::string label = leaps::option(options, "--label", leaps::file_stem(engine_path));
  const int iters = leaps::to_count(leaps::option(options, "--iters", "20"), "--iters", 1);
  const int warmup = leaps::to_count(leaps::option(options, "--warmup", "3"), "--warmup", 0);
  const std::vector<char> plan = leaps::read_bytes(engine_path, "engine");

  Logger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
  if (!runtime) throw std::runtime_error("cannot create the TensorRT runtime");
  std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(plan.data(), plan.size()));
  if (!engine) throw std::runtime_error("cannot deserialize " + engine_path + " (built by another TensorRT or GPU?)");
  std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
  if (!context) throw std::runtime_error("cannot create an execution context");

  // The engine must have exactly one input, the float32 video.
  std::vector<std::string> names;
  for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) names.emplace_back(engine->getIOTensorName(i));
  for (const std::string& name : names) {
    if (engine->getTensorIOMode(name.c_str()) == nvinfer1::TensorIOMode::kINPUT && name != input_name)
      throw leaps::UsageError("the engine has an input '" + name + "' besides '" + input_name + "' (see --input-name)");
  }
  if (engine->getTensorIOMode(input_name.c_str()) != nvinfer1::TensorIOMode::kINPUT)
    throw leaps::UsageError("the engine has no input named '" + input_name + "' (see --input-name)");
  if (engine->getTensorDataType(input_name.c_str()) != nvinfer1::DataType::kFLOAT)
    throw std::runtime_error("input '" + input_name + "' is not float32");

  nvinfer1::Dims dims{};
  dims.nbDims = static_cast<int32_t>(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) dims.d[i] = shape[i];
  if (!context->setInputShape(input_name.c_str(), dims))
    throw std::runtime_error("the engine does not accept --shape " + shape_text + " (see its optimization profile)");

  // One device buffer per I/O tensor, sized from the shapes the input shape resolves to.
  std::vector<std::unique_ptr<DeviceBuffer>> buffers;
  void* input_buffer = nullptr;
  for (const std::string& name : names) {
    const nvinfer1::Dims tensor_shape = context->getTensorShape(name.c_str());
    std::size_t count = 1;
    for (int32_t i = 0; i < tensor_shape.nbDims; ++i) {
      if (tensor_shape.d[i] < 0) throw std::runtime_error("tensor '" + name + "' has an unresolved dimension");
      count *= static_cast<std::size_t>(tensor_shape.d[i]);
    }
    buffers.push_back(std::make_unique<DeviceBuffer>(count * element_size(engine->getTensorDataType(name.c_str()))));
    if (!context->setTensorAddress(name.c_str(), buffers.back()->data()))
      throw std::runtime_error("cannot set the address of tensor '" + name + "'");
    if (name == input_name) input_buffer = buffers.back()->data();
  }

  cudaStream_t stream = nullptr;
  check_cuda(cudaStreamCreate(&stream), "cudaStreamCreate");
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");

  std::vector<float> video(static_cast<std::size_t>(leaps::element_count(shape)));
  std::mt19937 generator(0);
  std::normal_distribution<float> noise(0.0f, 1.0f);
  for (float& value : video) value = noise(generator);
  check_cuda(cudaMemcpyAsync(input_buffer, video.data(), video.size() * sizeof(float), cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync");

  std::vector<double> times_ms;
  for (int i = 0; i < warmup + iters; ++i) {
    check_cuda(cudaEventRecord(start, stream), "cudaEventRecord");
    if (!context->enqueueV3(stream)) throw std::runtime_error("enqueueV3 failed");
    check_cuda(cudaEventRecord(stop, stream), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float elapsed_ms = 0;
    check_cuda(cudaEventElapsedTime(&elapsed_ms, start, stop), "cudaEventElapsedTime");
    if (i >= warmup) times_ms.push_back(elapsed_ms);
  }

  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  std::cout << leaps::summary_line(label, shape, "tensorrt " + runtime_version(), times_ms) << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return leaps::guarded_main([&] { return run(argc, argv); });
}
