// Native matrix products for the engine (a Node-API addon, built by scripts/build-native.mjs).
//
// C = A x B with any operand strides, the same contract as `gemm` in src/engine/wasm/kernels.wat, and the
// same arithmetic: every element of C is ((0 + a0*b0) + a1*b1) + ... in k order, each product and each sum
// rounded to float32 (separate multiply and add, never a fused multiply-add; built with -ffp-contract=off).
// So the results are bit for bit those of the wasm kernel, on either instruction set here. Zen 4 issues a
// 512-bit multiply and a 512-bit add each cycle on separate pipes (FP0/1 and FP2/3), 32 flops a cycle, the
// same rate as its two 256-bit FMA pipes; dropping FMA costs instructions, not peak.
//
// Blocking after Goto and van de Geijn (BLIS): B is packed per (KC x NC) block into NR-column panels that
// stay in L2/L3, A per (MC x KC) block into MR-row panels that stay in L2, and an MR x NR register tile
// accumulates over KC. Partial sums cross KC blocks through C as float32 values, which keeps the k order.

#include <immintrin.h>
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// Block sizes (floats): A blocks of MC x KC stay in L2, B blocks of KC x NC in L3.
#define KC 384
#define MC 192
#define NC 3072

// Register tiles: 4 x 64 with zmm (16 accumulators of 16 lanes), 6 x 16 with ymm (12 of 8).
#define MR512 4
#define NV512 4
#define NR512 (16 * NV512)
#define MR256 6
#define NR256 16

typedef struct {
  const float *p;
  ptrdiff_t row, col;
} Operand;

// Per-thread scratch (each worker thread has its own Node-API environment and instance data).
typedef struct {
  float *a, *b;
} Scratch;

static inline int min_int(int x, int y) { return x < y ? x : y; }

// B[k0.., j0..] as kc x nc in panels of nr columns, k-major inside a panel, zeros past nc.
static void pack_b(Operand B, int kc, int nc, int nr, float *out) {
  for (int j0 = 0; j0 < nc; j0 += nr) {
    int cols = min_int(nr, nc - j0);
    float *panel = out + (ptrdiff_t)j0 * kc;
    if (B.col == 1) {
      for (int k = 0; k < kc; k++) {
        memcpy(panel + (ptrdiff_t)k * nr, B.p + k * B.row + j0, sizeof(float) * cols);
        for (int j = cols; j < nr; j++) panel[(ptrdiff_t)k * nr + j] = 0;
      }
    } else {
      for (int j = 0; j < nr; j++) {
        const float *src = B.p + (j0 + j) * B.col;
        if (j < cols)
          for (int k = 0; k < kc; k++) panel[(ptrdiff_t)k * nr + j] = src[k * B.row];
        else
          for (int k = 0; k < kc; k++) panel[(ptrdiff_t)k * nr + j] = 0;
      }
    }
  }
}

// A[i0.., k0..] as mc x kc in panels of mr rows, k-major inside a panel, zeros past mc.
static void pack_a(Operand A, int mc, int kc, int mr, float *out) {
  for (int i0 = 0; i0 < mc; i0 += mr) {
    int rows = min_int(mr, mc - i0);
    float *panel = out + (ptrdiff_t)i0 * kc;
    if (A.row == 1) {
      for (int k = 0; k < kc; k++) {
        memcpy(panel + (ptrdiff_t)k * mr, A.p + k * A.col + i0, sizeof(float) * rows);
        for (int r = rows; r < mr; r++) panel[(ptrdiff_t)k * mr + r] = 0;
      }
    } else {
      for (int r = 0; r < mr; r++) {
        const float *src = A.p + (i0 + r) * A.row;
        if (r < rows)
          for (int k = 0; k < kc; k++) panel[(ptrdiff_t)k * mr + r] = src[k * A.col];
        else
          for (int k = 0; k < kc; k++) panel[(ptrdiff_t)k * mr + r] = 0;
      }
    }
  }
}

typedef void (*Tile)(int kc, const float *ap, const float *bp, float *c, ptrdiff_t cRow, int rows, int cols, int accumulate);

// One MR512 x NR512 tile: starts from zero, or from C's partial sums when `accumulate`; stores rows < rows,
// cols < cols. Four rows of four zmm: a wide tile needs fewer broadcasts per product, which measured
// faster here than 12 x 32 or 6 x 64 (86 against 68 and 83 GFLOP/s on one Zen 4 core).
__attribute__((target("avx512f"))) static void tile512(int kc, const float *restrict ap, const float *restrict bp, float *c, ptrdiff_t cRow, int rows, int cols, int accumulate) {
  __m512 acc[MR512][NV512];
  __mmask16 mask[NV512];
  for (int v = 0; v < NV512; v++) {
    const int left = cols - 16 * v;
    mask[v] = left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR512; r++)
#pragma GCC unroll 8
    for (int v = 0; v < NV512; v++) acc[r][v] = accumulate && r < rows ? _mm512_maskz_loadu_ps(mask[v], c + r * cRow + 16 * v) : _mm512_setzero_ps();
  for (int k = 0; k < kc; k++) {
    __m512 b[NV512];
#pragma GCC unroll 8
    for (int v = 0; v < NV512; v++) b[v] = _mm512_load_ps(bp + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < MR512; r++) {
      const __m512 a = _mm512_set1_ps(ap[r]);
#pragma GCC unroll 8
      for (int v = 0; v < NV512; v++) acc[r][v] = _mm512_add_ps(acc[r][v], _mm512_mul_ps(a, b[v]));
    }
    ap += MR512;
    bp += NR512;
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR512; r++)
    if (r < rows)
#pragma GCC unroll 8
      for (int v = 0; v < NV512; v++) _mm512_mask_storeu_ps(c + r * cRow + 16 * v, mask[v], acc[r][v]);
}

// The AVX2 tile, MR256 x NR256; partial columns go through a small buffer (AVX2 has no masked float moves worth the lanes).
__attribute__((target("avx2"))) static void tile256(int kc, const float *restrict ap, const float *restrict bp, float *c, ptrdiff_t cRow, int rows, int cols, int accumulate) {
  __m256 acc[MR256][2];
  float edge[MR256][NR256] __attribute__((aligned(32)));
  const int full = cols == NR256;
  if (!full) memset(edge, 0, sizeof edge);
  if (accumulate && !full)
    for (int r = 0; r < rows; r++) memcpy(edge[r], c + r * cRow, sizeof(float) * cols);
#pragma GCC unroll 8
  for (int r = 0; r < MR256; r++) {
    acc[r][0] = _mm256_setzero_ps();
    acc[r][1] = _mm256_setzero_ps();
  }
  if (accumulate) {
#pragma GCC unroll 8
    for (int r = 0; r < MR256; r++) {
      if (r < rows) {
        const float *src = full ? c + r * cRow : edge[r];
        acc[r][0] = _mm256_loadu_ps(src);
        acc[r][1] = _mm256_loadu_ps(src + 8);
      }
    }
  }
  for (int k = 0; k < kc; k++) {
    const __m256 b0 = _mm256_load_ps(bp);
    const __m256 b1 = _mm256_load_ps(bp + 8);
#pragma GCC unroll 8
    for (int r = 0; r < MR256; r++) {
      const __m256 a = _mm256_broadcast_ss(ap + r);
      acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_mul_ps(a, b0));
      acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_mul_ps(a, b1));
    }
    ap += MR256;
    bp += NR256;
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR256; r++) {
    if (r < rows) {
      float *dst = full ? c + r * cRow : edge[r];
      _mm256_storeu_ps(dst, acc[r][0]);
      _mm256_storeu_ps(dst + 8, acc[r][1]);
    }
  }
  if (!full)
    for (int r = 0; r < rows; r++) memcpy(c + r * cRow, edge[r], sizeof(float) * cols);
}

typedef struct {
  const char *name;
  Tile tile;
  int mr, nr;
} Kernel;

static const Kernel KERNELS[] = {{"avx512f", tile512, MR512, NR512}, {"avx2", tile256, MR256, NR256}};
#define KERNEL_COUNT 2

static int supported(int kernel) {
  __builtin_cpu_init();
  return kernel == 0 ? __builtin_cpu_supports("avx512f") : __builtin_cpu_supports("avx2");
}

static void gemm(const Kernel *kn, Scratch *s, Operand A, Operand B, float *C, ptrdiff_t cRow, int M, int K, int N) {
  if (M <= 0 || N <= 0) return;
  // K = 0 still runs one (empty) block, so C is set to zeros.
  for (int jc = 0; jc < N; jc += NC) {
    int nc = min_int(NC, N - jc);
    for (int pc = 0; pc == 0 || pc < K; pc += KC) {
      int kc = min_int(KC, K - pc);
      pack_b((Operand){B.p + pc * B.row + jc * B.col, B.row, B.col}, kc, nc, kn->nr, s->b);
      for (int ic = 0; ic < M; ic += MC) {
        int mc = min_int(MC, M - ic);
        pack_a((Operand){A.p + ic * A.row + pc * A.col, A.row, A.col}, mc, kc, kn->mr, s->a);
        for (int jr = 0; jr < nc; jr += kn->nr) {
          for (int ir = 0; ir < mc; ir += kn->mr) {
            kn->tile(kc, s->a + (ptrdiff_t)ir * kc, s->b + (ptrdiff_t)jr * kc, C + (ic + ir) * cRow + jc + jr, cRow, min_int(kn->mr, mc - ir), min_int(kn->nr, nc - jr), pc > 0);
          }
        }
      }
    }
  }
}

// ---- Node-API glue ----

#define CHECK(call)                                                                      \
  do {                                                                                   \
    if ((call) != napi_ok) {                                                             \
      napi_throw_error(env, NULL, "childtune native: bad arguments to " __FILE__ " call"); \
      return NULL;                                                                       \
    }                                                                                    \
  } while (0)

static void free_scratch(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  Scratch *s = data;
  free(s->a);
  free(s->b);
  free(s);
}

// gemm(kernel, heap, a, aRow, aCol, aE0, aE1, b, bRow, bCol, bE0, bE1, c, cRow, cE0, cE1, M, K, N, n0, n1):
// over entries e0 < n0, e1 < n1, C_e = A_e x B_e, where operand X_e starts at byte offset x + 4*(e0*xE0 + e1*xE1)
// of `heap` (an ArrayBuffer) and strides count float32 elements.
static napi_value js_gemm(napi_env env, napi_callback_info info) {
  size_t argc = 21;
  napi_value argv[21];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 21) {
    napi_throw_error(env, NULL, "childtune native: gemm takes 21 arguments");
    return NULL;
  }
  int64_t v[21];
  for (int i = 0; i < 21; i++)
    if (i != 1) CHECK(napi_get_value_int64(env, argv[i], &v[i]));
  void *heap;
  size_t bytes;
  CHECK(napi_get_arraybuffer_info(env, argv[1], &heap, &bytes));
  if (v[0] < 0 || v[0] >= KERNEL_COUNT || !supported((int)v[0])) {
    napi_throw_error(env, NULL, "childtune native: that kernel is not supported on this CPU");
    return NULL;
  }
  // Every element each operand addresses must lie in the heap: a wrong offset is an error, never a stray write.
  const int64_t M = v[16], K = v[17], N = v[18], n0 = v[19], n1 = v[20];
  if (M > 0 && N > 0 && n0 > 0 && n1 > 0) {
    const int64_t ends[3] = {
        v[2] + 4 * ((n0 - 1) * v[5] + (n1 - 1) * v[6] + (M - 1) * v[3] + (K - 1) * v[4] + 1),
        v[7] + 4 * ((n0 - 1) * v[10] + (n1 - 1) * v[11] + (K - 1) * v[8] + (N - 1) * v[9] + 1),
        v[12] + 4 * ((n0 - 1) * v[14] + (n1 - 1) * v[15] + (M - 1) * v[13] + N),
    };
    int ok = K >= 0 && v[2] >= 0 && v[7] >= 0 && v[12] >= 0;
    for (int i = 3; i <= 15; i++) ok = ok && (i == 7 || i == 12 || v[i] >= 0);
    for (int i = 0; i < 3; i++) ok = ok && ends[i] <= (int64_t)bytes;
    if (!ok) {
      napi_throw_range_error(env, NULL, "childtune native: a gemm operand reaches outside the heap");
      return NULL;
    }
  }
  Scratch *s;
  CHECK(napi_get_instance_data(env, (void **)&s));
  const Kernel *kn = &KERNELS[v[0]];
  const char *base = heap;
  for (int64_t e0 = 0; e0 < n0; e0++) {
    for (int64_t e1 = 0; e1 < n1; e1++) {
      Operand A = {(const float *)(base + v[2] + 4 * (e0 * v[5] + e1 * v[6])), v[3], v[4]};
      Operand B = {(const float *)(base + v[7] + 4 * (e0 * v[10] + e1 * v[11])), v[8], v[9]};
      float *C = (float *)(base + v[12] + 4 * (e0 * v[14] + e1 * v[15]));
      gemm(kn, s, A, B, C, v[13], (int)M, (int)K, (int)N);
    }
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  Scratch *s = calloc(1, sizeof(Scratch));
  // Largest panels over both kernels: A is MC x KC (MC is a multiple of both MRs), B is KC x NC.
  s->a = aligned_alloc(64, sizeof(float) * MC * KC);
  s->b = aligned_alloc(64, sizeof(float) * KC * NC);
  if (!s || !s->a || !s->b || napi_set_instance_data(env, s, free_scratch, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "childtune native: out of memory for the packing buffers");
    return NULL;
  }
  napi_value gemm_fn, kernels;
  CHECK(napi_create_function(env, "gemm", NAPI_AUTO_LENGTH, js_gemm, NULL, &gemm_fn));
  CHECK(napi_set_named_property(env, exports, "gemm", gemm_fn));
  // Kernel names this CPU runs, in the order of their index for gemm (unsupported ones are null).
  CHECK(napi_create_array_with_length(env, KERNEL_COUNT, &kernels));
  for (int i = 0; i < KERNEL_COUNT; i++) {
    napi_value name;
    if (supported(i))
      CHECK(napi_create_string_utf8(env, KERNELS[i].name, NAPI_AUTO_LENGTH, &name));
    else
      CHECK(napi_get_null(env, &name));
    CHECK(napi_set_element(env, kernels, i, name));
  }
  CHECK(napi_set_named_property(env, exports, "kernels", kernels));
  return exports;
}
