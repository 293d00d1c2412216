// Convolutions of a population of small CNNs on the CPU, as XLA FFI custom calls.
//
// Every model has its own kernel and its own images, so XLA sees a grouped convolution and
// runs each op over the whole population, out of cache. Here each model's images are done
// one at a time with the model's kernel held in L1, with 8-float vectors (GCC/Clang vector
// extensions) over output channels and several output pixels per weight load.
//
// Layouts (row-major): images [..., B, H, W, C]; kernels [..., K, K, C, F] (HWIO); biases
// [..., F]; outputs [..., B, H-K+1, W-K+1, F], or max-pooled [..., B, (H-K+1)/2, (W-K+1)/2, F].
// The leading dims are the population (under jax.vmap with broadcast_all, every operand has
// them); a kernel's images are the B after it.
// Stride 1, no padding, float32: the convolutions of the original zoos' CNNs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef int32_t vi8 __attribute__((vector_size(32), aligned(4)));
constexpr int kLanes = 8;
// Output pixels per weight load in the forward pass: as many as the registers hold (32 vectors).
constexpr int pixels_for(int vectors) { return vectors <= 2 ? 8 : vectors <= 4 ? 4 : 2; }
constexpr int kTaps = 4;      // kernel taps per gradient load (kernel gradient)
constexpr int kMaxVectors = 8;  // up to 64 channels on the vector side (cpu_conv.MAX_CHANNELS)

inline v8 load(const float* p) { return *reinterpret_cast<const v8*>(p); }
inline void store(float* p, v8 v) { *reinterpret_cast<v8*>(p) = v; }
inline int64_t round_up(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

struct Geometry {
  int64_t models, batch, height, width, in_ch, kernel, out_ch;
  int64_t out_h() const { return height - kernel + 1; }
  int64_t out_w() const { return width - kernel + 1; }
};

int64_t product(ffi::Span<const int64_t> dims, size_t begin, size_t end) {
  int64_t n = 1;
  for (size_t i = begin; i < end; ++i) n *= dims[i];
  return n;
}

// Checks shapes: images [..., B, H, W, C] against kernels [..., K, K, C, F].
ffi::ErrorOr<Geometry> geometry(ffi::Span<const int64_t> images, ffi::Span<const int64_t> kernels) {
  if (images.size() < 3 || kernels.size() < 4)
    return ffi::Unexpected(ffi::Error::InvalidArgument("population conv: images need rank >= 3, kernels rank >= 4"));
  size_t ri = images.size(), rk = kernels.size();
  Geometry g;
  g.models = product(kernels, 0, rk - 4);
  int64_t images_total = product(images, 0, ri - 3);
  g.height = images[ri - 3];
  g.width = images[ri - 2];
  g.in_ch = images[ri - 1];
  g.kernel = kernels[rk - 4];
  g.out_ch = kernels[rk - 1];
  if (kernels[rk - 3] != g.kernel || kernels[rk - 2] != g.in_ch)
    return ffi::Unexpected(ffi::Error::InvalidArgument("population conv: kernels must be [K, K, C_in, C_out] with the images' C_in"));
  if (g.models == 0 || images_total % g.models != 0)
    return ffi::Unexpected(ffi::Error::InvalidArgument("population conv: images do not split evenly over the kernels"));
  if (g.kernel > g.height || g.kernel > g.width)
    return ffi::Unexpected(ffi::Error::InvalidArgument("population conv: kernel larger than the image"));
  if (round_up(g.out_ch) > kMaxVectors * kLanes || round_up(g.in_ch) > kMaxVectors * kLanes)
    return ffi::Unexpected(ffi::Error::InvalidArgument("population conv: at most 64 channels"));
  g.batch = images_total / g.models;
  return g;
}

// Writes P pixels' accumulators [P][NV] to out [P, F] (the first F of the NV * 8 lanes).
template <int NV, int P>
inline void store_pixels(const v8 (&acc)[P][NV], float* out, int64_t out_ch) {
  for (int p = 0; p < P; ++p) {
    float* o = out + p * out_ch;
    if (out_ch == NV * kLanes) {
      for (int v = 0; v < NV; ++v) store(o + v * kLanes, acc[p][v]);
    } else {
      float tmp[NV * kLanes];
      for (int v = 0; v < NV; ++v) store(tmp + v * kLanes, acc[p][v]);
      for (int64_t c = 0; c < out_ch; ++c) o[c] = tmp[c];
    }
  }
}

// One image: out[oy, ox, :F] = sum_{i, q} x[oy + i, ox, q] * w[i, q, :], where q runs over the
// K * C contiguous floats (j, c) of a kernel row. `w` is [K, K * C, NV * 8], zero-padded.
template <int NV, int P>
inline void forward_pixels(const float* x, const float* w, float* out, int64_t width, int64_t in_ch,
                           int64_t kernel, int64_t out_ch, int64_t oy, int64_t ox) {
  const int64_t row_len = kernel * in_ch;
  v8 acc[P][NV] = {};
  for (int64_t i = 0; i < kernel; ++i) {
    const float* row = x + ((oy + i) * width + ox) * in_ch;
    const float* wi = w + i * row_len * NV * kLanes;
    for (int64_t q = 0; q < row_len; ++q) {
      v8 wv[NV];
      for (int v = 0; v < NV; ++v) wv[v] = load(wi + (q * NV + v) * kLanes);
      for (int p = 0; p < P; ++p) {
        const float a = row[p * in_ch + q];
        for (int v = 0; v < NV; ++v) acc[p][v] += a * wv[v];
      }
    }
  }
  store_pixels<NV, P>(acc, out, out_ch);
}

// The same with K known at compile time: an input value x[oy + i, ox + s, c] serves the P
// output pixels p = s - j of all K kernel columns j, so it is loaded once per row instead of
// K times, with the K weight vectors of (i, c) in registers (FMA-bound instead of load-bound).
template <int NV, int P, int K>
inline void forward_pixels_k(const float* x, const float* w, float* out, int64_t width, int64_t in_ch,
                             int64_t out_ch, int64_t oy, int64_t ox) {
  v8 acc[P][NV] = {};
  for (int i = 0; i < K; ++i) {
    const float* row = x + ((oy + i) * width + ox) * in_ch;
    const float* wi = w + i * K * in_ch * NV * kLanes;
    for (int64_t c = 0; c < in_ch; ++c) {
      v8 wv[K][NV];
      for (int j = 0; j < K; ++j)
        for (int v = 0; v < NV; ++v) wv[j][v] = load(wi + ((j * in_ch + c) * NV + v) * kLanes);
#pragma GCC unroll 16
      for (int s = 0; s < P + K - 1; ++s) {
        const float a = row[s * in_ch + c];
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) {
          const int p = s - j;
          if (p >= 0 && p < P)
            for (int v = 0; v < NV; ++v) acc[p][v] += a * wv[j][v];
        }
      }
    }
  }
  store_pixels<NV, P>(acc, out, out_ch);
}

// One image [H, W, C] -> [H-K+1, W-K+1, F]; K = 0: the kernel size is a run-time value.
template <int NV, int K>
void forward_image(const float* x, const float* w, float* out, int64_t height, int64_t width,
                   int64_t in_ch, int64_t kernel, int64_t out_ch) {
  const int64_t oh = height - kernel + 1, ow = width - kernel + 1;
  constexpr int P = pixels_for(NV);
  for (int64_t oy = 0; oy < oh; ++oy) {
    int64_t ox = 0;
    for (; ox + P <= ow; ox += P) {
      float* o = out + (oy * ow + ox) * out_ch;
      if constexpr (K > 0) forward_pixels_k<NV, P, K>(x, w, o, width, in_ch, out_ch, oy, ox);
      else forward_pixels<NV, P>(x, w, o, width, in_ch, kernel, out_ch, oy, ox);
    }
    if constexpr (P > 4) {  // narrow images (CNN-m's last conv: 4 pixels wide)
      for (; ox + 4 <= ow; ox += 4) {
        float* o = out + (oy * ow + ox) * out_ch;
        if constexpr (K > 0) forward_pixels_k<NV, 4, K>(x, w, o, width, in_ch, out_ch, oy, ox);
        else forward_pixels<NV, 4>(x, w, o, width, in_ch, kernel, out_ch, oy, ox);
      }
    }
    for (; ox < ow; ++ox)
      forward_pixels<NV, 1>(x, w, out + (oy * ow + ox) * out_ch, width, in_ch, kernel, out_ch, oy, ox);
  }
}

// [K, K, C, F] -> [K, K * C, FP] with F zero-padded to FP (a multiple of 8).
void pad_kernel(const float* w, int64_t taps, int64_t out_ch, std::vector<float>& padded) {
  const int64_t fp = round_up(out_ch);
  padded.assign(taps * fp, 0.0f);
  for (int64_t t = 0; t < taps; ++t) std::memcpy(&padded[t * fp], w + t * out_ch, out_ch * sizeof(float));
}

// dx[oy + i, ox + j, c] += sum_f g[oy, ox, f] * w[i, j, c, f]. For an output pixel and a kernel
// row i, the K * C floats dx[oy + i, ox .. ox + K - 1, :] are contiguous: QB vectors of them
// (from vector q0) are updated from `rows` = [K, F, NQ * 8] (w rearranged, zero past K * C).
template <int QB>
inline void input_grad_block(const float* g, const float* rows, float* dx, int64_t pitch, int64_t in_ch,
                             int64_t kernel, int64_t out_ch, int64_t nq, int64_t oh, int64_t ow, int64_t q0) {
  for (int64_t oy = 0; oy < oh; ++oy) {
    for (int64_t ox = 0; ox < ow; ++ox) {
      const float* gp = g + (oy * ow + ox) * out_ch;
      for (int64_t i = 0; i < kernel; ++i) {
        float* d = dx + (oy + i) * pitch + ox * in_ch + q0 * kLanes;
        const float* wi = rows + i * out_ch * nq * kLanes + q0 * kLanes;
        v8 acc[QB];
        for (int q = 0; q < QB; ++q) acc[q] = load(d + q * kLanes);
        for (int64_t f = 0; f < out_ch; ++f) {
          const float a = gp[f];
          for (int q = 0; q < QB; ++q) acc[q] += a * load(wi + f * nq * kLanes + q * kLanes);
        }
        for (int q = 0; q < QB; ++q) store(d + q * kLanes, acc[q]);
      }
    }
  }
}

// dw[i, q, :] += sum_{oy, ox} x[oy + i, ox, q] * g[oy, ox, :] for T taps q0.. at once.
template <int NV, int T>
inline void kernel_grad_taps(const float* x, const float* g, float* acc_out, int64_t width, int64_t in_ch,
                             int64_t oh, int64_t ow, int64_t i, int64_t q0) {
  v8 acc[T][NV];
  for (int t = 0; t < T; ++t)
    for (int v = 0; v < NV; ++v) acc[t][v] = load(acc_out + (t * NV + v) * kLanes);
  for (int64_t oy = 0; oy < oh; ++oy) {
    const float* row = x + (oy + i) * width * in_ch + q0;
    const float* gr = g + oy * ow * NV * kLanes;
    for (int64_t ox = 0; ox < ow; ++ox) {
      v8 gv[NV];
      for (int v = 0; v < NV; ++v) gv[v] = load(gr + (ox * NV + v) * kLanes);
      for (int t = 0; t < T; ++t) {
        const float a = row[ox * in_ch + t];
        for (int v = 0; v < NV; ++v) acc[t][v] += a * gv[v];
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int v = 0; v < NV; ++v) store(acc_out + (t * NV + v) * kLanes, acc[t][v]);
}

template <int NV>
void kernel_grad_any(const float* x, const float* g, float* acc, int64_t width, int64_t in_ch,
                     int64_t kernel, int64_t oh, int64_t ow) {
  const int64_t row_len = kernel * in_ch, fp = NV * kLanes;
  for (int64_t i = 0; i < kernel; ++i) {
    float* acc_i = acc + i * row_len * fp;
    int64_t q = 0;
    for (; q + kTaps <= row_len; q += kTaps)
      kernel_grad_taps<NV, kTaps>(x, g, acc_i + q * fp, width, in_ch, oh, ow, i, q);
    for (; q < row_len; ++q) kernel_grad_taps<NV, 1>(x, g, acc_i + q * fp, width, in_ch, oh, ow, i, q);
  }
}

// acc[j] += x[ox + p + j, c] * g[ox + p] over a block of P pixels of one row: each input value
// serves every kernel column j (P + K - 1 input loads for P * K vector FMAs).
template <int NV, int P, int K>
inline void kernel_grad_block(const float* row, const float* gr, v8 (&acc)[K][NV], int64_t in_ch, int64_t ox) {
  constexpr int64_t fp = NV * kLanes;
  v8 gv[P][NV];
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < NV; ++v) gv[p][v] = load(gr + (ox + p) * fp + v * kLanes);
#pragma GCC unroll 16
  for (int t = 0; t < P + K - 1; ++t) {
    const float a = row[(ox + t) * in_ch];
#pragma GCC unroll 8
    for (int j = 0; j < K; ++j) {
      const int p = t - j;
      if (p >= 0 && p < P)
        for (int v = 0; v < NV; ++v) acc[j][v] += a * gv[p][v];
    }
  }
}

// kernel_grad_any with K known at compile time: for a kernel row i and input channel c, the
// K accumulators of the columns j stay in registers over all pixels.
template <int NV, int K>
void kernel_grad_image_k(const float* x, const float* g, float* acc_out, int64_t width, int64_t in_ch,
                         int64_t kernel, int64_t oh, int64_t ow) {
  (void)kernel;
  constexpr int P = pixels_for(NV);
  constexpr int64_t fp = NV * kLanes;
  for (int i = 0; i < K; ++i)
    for (int64_t c = 0; c < in_ch; ++c) {
      v8 acc[K][NV];
      float* out = acc_out + (i * K * in_ch + c) * fp;  // tap (i, j, c) at out + j * in_ch * fp
      for (int j = 0; j < K; ++j)
        for (int v = 0; v < NV; ++v) acc[j][v] = load(out + (j * in_ch * NV + v) * kLanes);
      for (int64_t oy = 0; oy < oh; ++oy) {
        const float* row = x + (oy + i) * width * in_ch + c;
        const float* gr = g + oy * ow * fp;
        int64_t ox = 0;
        for (; ox + P <= ow; ox += P) kernel_grad_block<NV, P, K>(row, gr, acc, in_ch, ox);
        if constexpr (P > 4)
          for (; ox + 4 <= ow; ox += 4) kernel_grad_block<NV, 4, K>(row, gr, acc, in_ch, ox);
        for (; ox < ow; ++ox) kernel_grad_block<NV, 1, K>(row, gr, acc, in_ch, ox);
      }
      for (int j = 0; j < K; ++j)
        for (int v = 0; v < NV; ++v) store(out + (j * in_ch * NV + v) * kLanes, acc[j][v]);
    }
}

// Kernel gradient of one image, accumulated into acc [K, K * C, NV * 8]; K = 0: run-time K.
template <int NV, int K>
void kernel_grad_image(const float* x, const float* g, float* acc, int64_t width, int64_t in_ch, int64_t kernel,
                       int64_t oh, int64_t ow) {
  if constexpr (K > 0) kernel_grad_image_k<NV, K>(x, g, acc, width, in_ch, kernel, oh, ow);
  else kernel_grad_any<NV>(x, g, acc, width, in_ch, kernel, oh, ow);
}

// Both image functions: (x, w or g, out, 5 sizes) -> void.
using ImageFn = void (*)(const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t);
struct Forward {
  template <int NV, int K> static constexpr ImageFn fn = forward_image<NV, K>;
};
struct KernelGrad {
  template <int NV, int K> static constexpr ImageFn fn = kernel_grad_image<NV, K>;
};

template <class Op, int NV>
ImageFn with_vectors(int64_t kernel) {
  if constexpr (NV <= 2) {  // wider: the K * NV weights and accumulators spill (measured slower)
    switch (kernel) {
      case 2: return Op::template fn<NV, 2>;
      case 3: return Op::template fn<NV, 3>;
      case 5: return Op::template fn<NV, 5>;
      default: break;
    }
  }
  return Op::template fn<NV, 0>;
}

// Op's image function for F channels (NV = ceil(F / 8) vectors) and a K x K kernel, with K
// known at compile time for the zoos' kernels (2, 3, 5).
template <class Op>
ImageFn image_fn(int64_t channels, int64_t kernel) {
  switch (round_up(channels) / kLanes) {
    case 1: return with_vectors<Op, 1>(kernel);
    case 2: return with_vectors<Op, 2>(kernel);
    case 3: return with_vectors<Op, 3>(kernel);
    case 4: return with_vectors<Op, 4>(kernel);
    case 5: return with_vectors<Op, 5>(kernel);
    case 6: return with_vectors<Op, 6>(kernel);
    case 7: return with_vectors<Op, 7>(kernel);
    default: return with_vectors<Op, 8>(kernel);
  }
}

// Max-pool 2x2, stride 2, floor (PyTorch's MaxPool2d(2, 2)) of one conv output image
// [OH, OW, FP] (channels padded to FP, a multiple of 8) -> pooled [OH / 2, OW / 2, F]. `which`
// keeps the window position (dy * 2 + dx) that PyTorch's rule picks (a later value wins when
// greater or NaN), where the gradient goes.
void pool_image(const float* conv, int64_t fp, float* pooled, uint8_t* which, int64_t oh, int64_t ow, int64_t f) {
  const int64_t ph = oh / 2, pw = ow / 2;
  float best_all[kMaxVectors * kLanes];
  int32_t pick_all[kMaxVectors * kLanes];
  for (int64_t py = 0; py < ph; ++py)
    for (int64_t px = 0; px < pw; ++px) {
      const float* top = conv + (2 * py * ow + 2 * px) * fp;
      const float* window[4] = {top, top + fp, top + ow * fp, top + (ow + 1) * fp};
      for (int64_t c = 0; c < fp; c += kLanes) {
        v8 best = load(window[0] + c);
        vi8 pick = {};
        for (int d = 1; d < 4; ++d) {
          const v8 v = load(window[d] + c);
          const vi8 take = (v > best) | (v != v);
          best = take ? v : best;
          pick = take ? d : pick;
        }
        store(best_all + c, best);
        std::memcpy(pick_all + c, &pick, sizeof(pick));
      }
      const int64_t p = (py * pw + px) * f;
      for (int64_t c = 0; c < f; ++c) {
        pooled[p + c] = best_all[c];
        which[p + c] = uint8_t(pick_all[c]);
      }
    }
}

// The gradient of the conv outputs, image by image, as [OH * OW, stride] (channels past F zero):
// the caller's buffer itself where it already has that layout; else copied, or un-pooled from
// the gradient of the pooled outputs (zero except at each window's maximum).
class OutputGrad {
 public:
  OutputGrad(const float* grads, const uint8_t* which, int64_t oh, int64_t ow, int64_t f, int64_t stride)
      : grads_(grads), which_(which), oh_(oh), ow_(ow), f_(f), stride_(stride) {
    if (which_ || stride_ != f_) scratch_.assign(oh * ow * stride, 0.0f);
  }
  int64_t image_size() const { return which_ ? (oh_ / 2) * (ow_ / 2) * f_ : oh_ * ow_ * f_; }
  const float* image(int64_t n) {
    const float* g = grads_ + n * image_size();
    if (!which_ && stride_ == f_) return g;
    if (!which_) {
      for (int64_t p = 0; p < oh_ * ow_; ++p)
        for (int64_t c = 0; c < f_; ++c) scratch_[p * stride_ + c] = g[p * f_ + c];
      return scratch_.data();
    }
    const int64_t ph = oh_ / 2, pw = ow_ / 2;
    const uint8_t* at = which_ + n * image_size();
    std::fill(scratch_.begin(), scratch_.end(), 0.0f);
    for (int64_t py = 0; py < ph; ++py)
      for (int64_t px = 0; px < pw; ++px) {
        const int64_t p = (py * pw + px) * f_;
        for (int64_t c = 0; c < f_; ++c) {
          const int64_t d = at[p + c];
          scratch_[((2 * py + d / 2) * ow_ + 2 * px + d % 2) * stride_ + c] = g[p + c];
        }
      }
    return scratch_.data();
  }

 private:
  const float* grads_;
  const uint8_t* which_;
  int64_t oh_, ow_, f_, stride_;
  std::vector<float> scratch_;
};

ffi::Error size_error(const char* what) {
  return ffi::Error::InvalidArgument(std::string("population conv: ") + what + " has the wrong size");
}

// Conv (and with `which`, max-pool) of every model's images with its kernel.
ffi::Error forward(ffi::Buffer<ffi::F32> images, ffi::Buffer<ffi::F32> kernels, ffi::Buffer<ffi::F32> biases,
                   float* out, size_t out_size, uint8_t* which) {
  auto g = geometry(images.dimensions(), kernels.dimensions());
  if (g.has_error()) return g.error();
  const Geometry& s = *g;
  if (biases.element_count() != size_t(s.models * s.out_ch)) return size_error("the bias");
  const int64_t taps = s.kernel * s.kernel * s.in_ch, image_in = s.height * s.width * s.in_ch;
  const int64_t oh = s.out_h(), ow = s.out_w(), image_out = (which ? (oh / 2) * (ow / 2) : oh * ow) * s.out_ch;
  if (out_size != size_t(s.models * s.batch * image_out)) return size_error("the output");
  const ImageFn fn = image_fn<Forward>(s.out_ch, s.kernel);
  const int64_t fp = round_up(s.out_ch);
  std::vector<float> padded, conv(which ? oh * ow * fp : 0);  // pooled: the conv image, padded channels
  const float* x = images.typed_data();
  const float* w = kernels.typed_data();
  for (int64_t m = 0; m < s.models; ++m) {
    pad_kernel(w + m * taps * s.out_ch, taps, s.out_ch, padded);
    const float* bias = biases.typed_data() + m * s.out_ch;
    for (int64_t b = 0; b < s.batch; ++b) {
      const int64_t n = m * s.batch + b;
      float* y = out + n * image_out;
      if (which) {
        fn(x + n * image_in, padded.data(), conv.data(), s.height, s.width, s.in_ch, s.kernel, fp);
        pool_image(conv.data(), fp, y, which + n * image_out, oh, ow, s.out_ch);
      } else {
        fn(x + n * image_in, padded.data(), y, s.height, s.width, s.in_ch, s.kernel, s.out_ch);
      }
      // The bias after the max (the same numbers: adding b keeps the order of floats).
      for (int64_t p = 0; p < image_out; p += s.out_ch)
        for (int64_t c = 0; c < s.out_ch; ++c) y[p + c] += bias[c];
    }
  }
  return ffi::Error::Success();
}

ffi::Error input_grad(ffi::Buffer<ffi::F32> grads, const uint8_t* which, ffi::Buffer<ffi::F32> kernels,
                      ffi::Result<ffi::Buffer<ffi::F32>>& out) {
  if (out->dimensions().size() < 3) return ffi::Error::InvalidArgument("population conv: input gradient needs rank >= 3");
  auto g = geometry(out->dimensions(), kernels.dimensions());
  if (g.has_error()) return g.error();
  const Geometry& s = *g;
  const int64_t k = s.kernel, f = s.out_ch, c = s.in_ch, oh = s.out_h(), ow = s.out_w();
  const int64_t nq = round_up(k * c) / kLanes, row = s.width * c, pitch = row + nq * kLanes;
  OutputGrad output_grad(grads.typed_data(), which, oh, ow, f, f);
  if (grads.element_count() != size_t(s.models * s.batch * output_grad.image_size())) return size_error("the gradient");
  std::vector<float> rows(k * f * nq * kLanes), dx_padded(s.height * pitch);
  const float* w = kernels.typed_data();
  float* dx = out->typed_data();
  for (int64_t m = 0; m < s.models; ++m) {
    const float* wm = w + m * k * k * c * f;
    std::fill(rows.begin(), rows.end(), 0.0f);
    for (int64_t i = 0; i < k; ++i)
      for (int64_t fi = 0; fi < f; ++fi)
        for (int64_t q = 0; q < k * c; ++q) rows[(i * f + fi) * nq * kLanes + q] = wm[(i * k * c + q) * f + fi];
    for (int64_t b = 0; b < s.batch; ++b) {
      const int64_t n = m * s.batch + b;
      const float* gi = output_grad.image(n);
      std::fill(dx_padded.begin(), dx_padded.end(), 0.0f);
      for (int64_t q0 = 0; q0 < nq; q0 += 4) {
        switch (std::min<int64_t>(4, nq - q0)) {
          case 1: input_grad_block<1>(gi, rows.data(), dx_padded.data(), pitch, c, k, f, nq, oh, ow, q0); break;
          case 2: input_grad_block<2>(gi, rows.data(), dx_padded.data(), pitch, c, k, f, nq, oh, ow, q0); break;
          case 3: input_grad_block<3>(gi, rows.data(), dx_padded.data(), pitch, c, k, f, nq, oh, ow, q0); break;
          default: input_grad_block<4>(gi, rows.data(), dx_padded.data(), pitch, c, k, f, nq, oh, ow, q0); break;
        }
      }
      float* dxi = dx + n * s.height * row;
      for (int64_t y = 0; y < s.height; ++y) std::memcpy(dxi + y * row, &dx_padded[y * pitch], row * sizeof(float));
    }
  }
  return ffi::Error::Success();
}

ffi::Error kernel_grad(ffi::Buffer<ffi::F32> images, ffi::Buffer<ffi::F32> grads, const uint8_t* which,
                       ffi::Result<ffi::Buffer<ffi::F32>>& out, ffi::Result<ffi::Buffer<ffi::F32>>& bias_out) {
  auto g = geometry(images.dimensions(), out->dimensions());
  if (g.has_error()) return g.error();
  const Geometry& s = *g;
  const int64_t k = s.kernel, oh = s.out_h(), ow = s.out_w(), f = s.out_ch, fp = round_up(f);
  const int64_t taps = k * k * s.in_ch, image_in = s.height * s.width * s.in_ch;
  OutputGrad output_grad(grads.typed_data(), which, oh, ow, f, fp);
  if (grads.element_count() != size_t(s.models * s.batch * output_grad.image_size())) return size_error("the gradient");
  if (bias_out->element_count() != size_t(s.models * f)) return size_error("the bias gradient");
  const ImageFn fn = image_fn<KernelGrad>(f, k);
  std::vector<float> acc(taps * fp);
  const float* x = images.typed_data();
  const float* dy = grads.typed_data();
  float* dw = out->typed_data();
  for (int64_t m = 0; m < s.models; ++m) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    float* db = bias_out->typed_data() + m * f;
    std::fill(db, db + f, 0.0f);
    for (int64_t b = 0; b < s.batch; ++b) {
      const int64_t n = m * s.batch + b;
      fn(x + n * image_in, output_grad.image(n), acc.data(), s.width, s.in_ch, k, oh, ow);
      const float* gn = dy + n * output_grad.image_size();  // the bias saw every (pooled) output
      for (int64_t p = 0; p < output_grad.image_size(); p += f)
        for (int64_t c = 0; c < f; ++c) db[c] += gn[p + c];
    }
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t c = 0; c < f; ++c) dw[(m * taps + t) * f + c] = acc[t * fp + c];
  }
  return ffi::Error::Success();
}

using F32 = ffi::Buffer<ffi::F32>;
using U8 = ffi::Buffer<ffi::U8>;

ffi::Error ConvForward(F32 images, F32 kernels, F32 biases, ffi::Result<F32> out) {
  return forward(images, kernels, biases, out->typed_data(), out->element_count(), nullptr);
}
ffi::Error ConvInputGrad(F32 grads, F32 kernels, ffi::Result<F32> out) {
  return input_grad(grads, nullptr, kernels, out);
}
ffi::Error ConvKernelGrad(F32 images, F32 grads, ffi::Result<F32> out, ffi::Result<F32> bias_out) {
  return kernel_grad(images, grads, nullptr, out, bias_out);
}
ffi::Error ConvPoolForward(F32 images, F32 kernels, F32 biases, ffi::Result<F32> out, ffi::Result<U8> which) {
  if (which->element_count() != out->element_count()) return size_error("the argmax");
  return forward(images, kernels, biases, out->typed_data(), out->element_count(), which->typed_data());
}
ffi::Error ConvPoolInputGrad(F32 grads, U8 which, F32 kernels, ffi::Result<F32> out) {
  if (which.element_count() != grads.element_count()) return size_error("the argmax");
  return input_grad(grads, which.typed_data(), kernels, out);
}
ffi::Error ConvPoolKernelGrad(F32 images, F32 grads, U8 which, ffi::Result<F32> out, ffi::Result<F32> bias_out) {
  if (which.element_count() != grads.element_count()) return size_error("the argmax");
  return kernel_grad(images, grads, which.typed_data(), out, bias_out);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxzooConvForward, ConvForward,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Arg<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxzooConvInputGrad, ConvInputGrad, ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxzooConvKernelGrad, ConvKernelGrad,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxzooConvPoolForward, ConvPoolForward,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Arg<F32>().Ret<F32>().Ret<U8>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxzooConvPoolInputGrad, ConvPoolInputGrad,
                              ffi::Ffi::Bind().Arg<F32>().Arg<U8>().Arg<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxzooConvPoolKernelGrad, ConvPoolKernelGrad,
                              ffi::Ffi::Bind().Arg<F32>().Arg<F32>().Arg<U8>().Ret<F32>().Ret<F32>());
