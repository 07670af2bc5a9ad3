// edgedeploy-mnn-runner: a small static MNN runner that speaks the protocol of edgedeploy/devices/runner.py.
//
// For boards where no Python runtime of MNN exists (Android: bionic, no python; armv7l: PyPI has no MNN wheel),
// cross-built by tools/build_native.sh against the user's own MNN source checkout (nothing of MNN is in this
// repository). edgedeploy drives it exactly like the Python runner (edgedeploy/devices/remote.py, native tool
// "mnn-runner"):
//
//   edgedeploy-mnn-runner --artifact M.mnn [--runtime mnn] [--iterations N] [--warmup W] [--threads T]
//       [--precision fp32|fp16] [--input-shape 1,3,H,W] [--progress FILE] [--state-every K]
//       [--parity-inputs DIR --parity-outputs DIR]
//
// It prints "S <ms>" per timed run (also appended to --progress FILE, flushed) and one "RESULT {json}" line. Each
// DIR/in-<i>.npy (float32, C order, NCHW) is run once and its first output written to DIR/out-<i>.npy; files are
// opened by index, the folder is never listed (a 32-bit readdir under qemu-user on ext4 can return nothing).
// The input is copied into the session before EVERY run, outside the timed region: MNN overwrites the session's
// input tensor during runSession. MNN API: Interpreter / Session / Tensor (MNN/Interpreter.hpp, MNN/Tensor.hpp).
// Exit status: 0 done, 2 bad arguments, 3 the model cannot be loaded.

#include <MNN/Interpreter.hpp>
#include <MNN/MNNDefine.h>
#include <MNN/Tensor.hpp>

#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Args {
  std::string artifact, runtime = "mnn", precision = "fp32", progress, parity_in, parity_out;
  int iterations = 50, warmup = 5, threads = 1, state_every = 10;
  std::vector<int> shape = {1, 3, 224, 224};
};

double now_ms() {
  using clock = std::chrono::steady_clock;  // monotonic
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

bool parse_args(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) return false;
    std::string v = argv[++i];
    if (k == "--artifact") a->artifact = v;
    else if (k == "--runtime") a->runtime = v;
    else if (k == "--iterations") a->iterations = std::atoi(v.c_str());
    else if (k == "--warmup") a->warmup = std::atoi(v.c_str());
    else if (k == "--threads") a->threads = std::atoi(v.c_str());
    else if (k == "--precision") a->precision = v;
    else if (k == "--progress") a->progress = v;
    else if (k == "--state-every") a->state_every = std::atoi(v.c_str());
    else if (k == "--parity-inputs") a->parity_in = v;
    else if (k == "--parity-outputs") a->parity_out = v;
    else if (k == "--input-shape") {
      a->shape.clear();
      std::stringstream ss(v);
      std::string d;
      while (std::getline(ss, d, ',')) a->shape.push_back(std::atoi(d.c_str()));
    } else return false;
  }
  return !a->artifact.empty() && a->runtime == "mnn" && a->iterations >= 1 && a->warmup >= 0 && a->threads >= 1 &&
         a->shape.size() == 4 && (a->parity_in.empty() == a->parity_out.empty());
}

// .npy version 1/2/3, little-endian float32, C order: returns false for anything else
bool read_npy(const std::string& path, std::vector<float>* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) return false;
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  std::string header(hlen, '\0');
  f.read(&header[0], hlen);
  if (header.find("'<f4'") == std::string::npos || header.find("'fortran_order': False") == std::string::npos)
    return false;
  std::vector<char> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  out->resize(data.size() / sizeof(float));
  std::memcpy(out->data(), data.data(), out->size() * sizeof(float));
  return true;
}

bool write_npy(const std::string& path, const float* data, const std::vector<int>& shape) {
  std::string dims;
  size_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
    if (i + 1 < shape.size()) dims += " ";
    n *= static_cast<size_t>(shape[i]);
  }
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::ofstream f(path, std::ios::binary);
  if (!f) return false;
  const uint16_t hlen = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  const unsigned char hb[2] = {static_cast<unsigned char>(hlen & 0xff), static_cast<unsigned char>(hlen >> 8)};
  f.write(reinterpret_cast<const char*>(hb), 2);
  f.write(header.data(), header.size());
  f.write(reinterpret_cast<const char*>(data), n * sizeof(float));
  return static_cast<bool>(f);
}

struct Runner {
  std::shared_ptr<MNN::Interpreter> net;
  MNN::Session* session = nullptr;
  MNN::Tensor* input = nullptr;
  std::unique_ptr<MNN::Tensor> host_in;

  void feed(const std::vector<float>& x) {  // a fresh copy before every run (runSession overwrites the input)
    std::memcpy(host_in->host<float>(), x.data(), std::min(x.size(), static_cast<size_t>(host_in->elementSize())) * sizeof(float));
    input->copyFromHostTensor(host_in.get());
  }
  void infer() { net->runSession(session); }
  std::vector<float> output(std::vector<int>* shape) {
    MNN::Tensor* out = net->getSessionOutput(session, nullptr);
    MNN::Tensor host(out, MNN::Tensor::CAFFE);
    out->copyToHostTensor(&host);
    *shape = host.shape();
    return std::vector<float>(host.host<float>(), host.host<float>() + static_cast<size_t>(host.elementSize()));
  }
};

std::string summary_json(const std::vector<float>& v, const std::vector<int>& shape) {
  std::ostringstream o;
  o.precision(9);
  double sum = 0;
  for (float x : v) sum += x;
  o << "{\"shape\": [";
  for (size_t i = 0; i < shape.size(); ++i) o << (i ? ", " : "") << shape[i];
  o << "], \"sum\": " << sum << ", \"head\": [";
  for (size_t i = 0; i < v.size() && i < 5; ++i) o << (i ? ", " : "") << static_cast<double>(v[i]);
  o << "]}";
  return o.str();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse_args(argc, argv, &a)) {
    std::fprintf(stderr, "runner: need --artifact M.mnn, --iterations >= 1, --warmup >= 0, --threads >= 1, "
                         "--input-shape N,C,H,W, --runtime mnn, and --parity-inputs with --parity-outputs\n");
    return 2;
  }
  double t0 = now_ms();
  Runner r;
  r.net.reset(MNN::Interpreter::createFromFile(a.artifact.c_str()));
  if (!r.net) {
    std::fprintf(stderr, "runner: mnn cannot load %s\n", a.artifact.c_str());
    return 3;
  }
  MNN::ScheduleConfig cfg;
  cfg.type = MNN_FORWARD_CPU;
  cfg.numThread = a.threads;
  MNN::BackendConfig backend;
  backend.precision = a.precision == "fp32" ? MNN::BackendConfig::Precision_High : MNN::BackendConfig::Precision_Low;
  cfg.backendConfig = &backend;
  r.session = r.net->createSession(cfg);
  r.input = r.net->getSessionInput(r.session, nullptr);
  if (!r.session || !r.input) {
    std::fprintf(stderr, "runner: mnn cannot create a session for %s\n", a.artifact.c_str());
    return 3;
  }
  r.net->resizeTensor(r.input, a.shape);
  r.net->resizeSession(r.session);
  r.host_in.reset(new MNN::Tensor(r.input, MNN::Tensor::CAFFE));
  double load_ms = now_ms() - t0;

  std::vector<std::string> written;
  if (!a.parity_in.empty()) {
    for (int i = 0; i < 10000; ++i) {
      std::vector<float> x;
      const std::string src = a.parity_in + "/in-" + std::to_string(i) + ".npy";
      if (access(src.c_str(), R_OK) != 0) break;
      if (!read_npy(src, &x)) {
        std::fprintf(stderr, "runner: %s is not a float32 C-order .npy file\n", src.c_str());
        return 2;
      }
      r.feed(x);
      r.infer();
      std::vector<int> shape;
      std::vector<float> y = r.output(&shape);
      const std::string name = "out-" + std::to_string(i) + ".npy";
      if (i == 0 && mkdir(a.parity_out.c_str(), 0755) != 0 && access(a.parity_out.c_str(), W_OK) != 0) {
        std::fprintf(stderr, "runner: cannot create %s\n", a.parity_out.c_str());
        return 2;
      }
      if (!write_npy(a.parity_out + "/" + name, y.data(), shape)) return 2;
      written.push_back(name);
    }
  }
  size_t n = 1;
  for (int d : a.shape) n *= static_cast<size_t>(d);
  std::vector<float> x(n);  // the Python runner's deterministic input: linspace over [-1, 1]
  for (size_t i = 0; i < n; ++i) x[i] = n > 1 ? static_cast<float>(-1.0 + 2.0 * i / (n - 1)) : -1.0f;

  r.feed(x);
  t0 = now_ms();
  r.infer();
  double first_ms = now_ms() - t0;
  std::vector<int> oshape;
  std::vector<float> first = r.output(&oshape);
  std::ostringstream warm;
  for (int i = 0; i < a.warmup; ++i) {
    r.feed(x);
    t0 = now_ms();
    r.infer();
    warm << (i ? ", " : "") << now_ms() - t0;
  }
  std::vector<float> after_warm = r.output(&oshape);
  FILE* progress = a.progress.empty() ? nullptr : std::fopen(a.progress.c_str(), "a");
  std::ostringstream samples;
  samples.precision(9);
  for (int i = 0; i < a.iterations; ++i) {
    r.feed(x);
    t0 = now_ms();
    r.infer();
    double ms = now_ms() - t0;
    std::printf("S %.6f\n", ms);
    std::fflush(stdout);
    if (progress) {
      std::fprintf(progress, "%.6f\n", ms);
      std::fflush(progress);
    }
    samples << (i ? ", " : "") << ms;
  }
  if (progress) std::fclose(progress);
  std::vector<float> last = r.output(&oshape);
  struct utsname u;
  uname(&u);
  std::ostringstream o;
  o.precision(9);
  o << "{\"runner_version\": 2, \"runner\": \"edgedeploy-mnn-runner\", \"runtime\": \"mnn\", \"runtime_version\": \""
    << MNN::getVersion() << "\", \"arch\": \"" << u.machine << "\", \"python\": null, \"kernel\": \"" << u.release
    << "\", \"pid\": " << getpid() << ", \"cpus_allowed\": [], \"threads\": " << a.threads << ", \"input_shape\": ["
    << a.shape[0] << ", " << a.shape[1] << ", " << a.shape[2] << ", " << a.shape[3] << "], \"load_ms\": " << load_ms
    << ", \"first_ms\": " << first_ms << ", \"warmup_ms\": [" << warm.str() << "], \"samples_ms\": ["
    << samples.str() << "], \"output\": " << summary_json(after_warm, oshape)
    << ", \"output_last\": " << summary_json(last, oshape)
    << ", \"repeat_identical\": " << (first == last ? "true" : "false") << ", \"parity_outputs\": [";
  for (size_t i = 0; i < written.size(); ++i) o << (i ? ", " : "") << "\"" << written[i] << "\"";
  o << "], \"freq_trace\": []}";
  std::printf("RESULT %s\n", o.str().c_str());
  std::fflush(stdout);
  return 0;
}
