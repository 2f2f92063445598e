// Native matrix products for the engine (a Node-API addon, built by scripts/build-native.mjs), and at the width of the
// run's matrix kernel (AVX-512 or AVX2) a few passes around them (GELU, a pass's gradient weighting, AdamW,
// Child-Tuning's keep masks), each computing its WebAssembly or JavaScript form's bits.
//
// C = A x B with any operand strides, the same contract as `gemm` in src/engine/wasm/kernels.wat. Three kinds of
// arithmetic, one kernel family each, chosen per run (src/engine/native.ts):
// - exact (avx512f, avx2): every element of C is ((0 + a0*b0) + a1*b1) + ... in k order, each product and each sum
//   rounded to float32 (separate multiply and add; built with -ffp-contract=off), so bit for bit the wasm kernel's.
//   Zen 4 and 5 issue multiplies and adds on separate pipes at the FMA rate, so this costs them no peak.
// - fma (avx512f-fma, avx2-fma): the same k order with each multiply-add fused (one rounding). Intel's server cores
//   run multiply, add and FMA on the same two ports, where the exact kernels reach half the FMA peak.
// - bf16 (amx-bf16, avx512bf16): operands rounded to bfloat16 (nearest even), products summed in float32: by AMX
//   tiles (TDPBF16PS, 16 x 16 x 32 per instruction) where the CPU has them, else two k at a time by VDPBF16PS.
//
// Blocking after Goto and van de Geijn (BLIS): B is packed per (KC x NC) block into NR-column panels that
// stay in L2/L3, A per (MC x KC) block into MR-row panels that stay in L2, and an MR x NR register tile
// accumulates over KC. Partial sums cross KC blocks through C as float32 values, which keeps the k order.

// clock_gettime (POSIX) and syscall (AMX's permission) under -std=c11.
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE 1

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// Block sizes (floats): A blocks of MC x KC (768 KB) stay in L2, B blocks of KC x NC in L3. A deep KC means C's
// partial sums are read and written once per 1,024 k: at BERT-base's products on one Zen 5 core, KC 1024 measured
// 160-190 GFLOP/s against 135-165 with KC 384 (KC 128-192, which keeps B's micro-panel in L1, measured 90-125).
#define KC 1024
#define MC 192
#define NC 1536

// Register tiles: 6 x 64 with zmm (24 accumulators of 16 lanes), 6 x 16 with ymm (12 of 8).
#define MR512 6
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
  void *a, *b;
} Scratch;

static inline int min_int(int x, int y) { return x < y ? x : y; }

// A panel's length per row or column of kc k: kc floats, or (pairs) (kc + 1) / 2 bf16 pairs of 32 bits, rounded up to
// a multiple of pad (the AMX tiles load whole blocks of k-pairs).
static inline int panel_depth(int kc, int pairs, int pad) { return ((pairs ? (kc + 1) / 2 : kc) + pad - 1) / pad * pad; }

// B[k0.., j0..] as kc x nc in panels of nr columns, k-major inside a panel, zeros past nc.
static void pack_b(Operand B, int kc, int nc, int nr, void *to) {
  float *out = to;
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
static void pack_a(Operand A, int mc, int kc, int mr, void *to) {
  float *out = to;
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

// Float32 to bfloat16, rounded to nearest even (NaNs stay NaN): what VCVTNEPS2BF16 computes.
static inline uint32_t bf16_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (u >> 16) | 0x40u;
  return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

// Element k of a k-pair: 0 past the end, so an odd K adds nothing.
static inline uint32_t bf16_pair(float lo, int has_hi, float hi) { return bf16_bits(lo) | (has_hi ? bf16_bits(hi) << 16 : 0u); }

// B[k0.., j0..] for the bf16 kernel: per pair of k, nr columns of (b[k][j], b[k+1][j]) in 32 bits, zeros past nc.
static void pack_b_bf16(Operand B, int kc, int nc, int nr, void *to) {
  uint32_t *out = to;
  const int kp = (kc + 1) / 2;
  for (int j0 = 0; j0 < nc; j0 += nr) {
    int cols = min_int(nr, nc - j0);
    uint32_t *panel = out + (ptrdiff_t)j0 * kp;
    for (int p = 0; p < kp; p++) {
      const int k = 2 * p, hi = k + 1 < kc;
      for (int j = 0; j < nr; j++) {
        const float *src = B.p + (j0 + j) * B.col;
        panel[(ptrdiff_t)p * nr + j] = j < cols ? bf16_pair(src[k * B.row], hi, hi ? src[(k + 1) * B.row] : 0) : 0;
      }
    }
  }
}

// A[i0.., k0..] for the bf16 kernel: per pair of k, mr rows of (a[i][k], a[i][k+1]) in 32 bits, zeros past mc.
static void pack_a_bf16(Operand A, int mc, int kc, int mr, void *to) {
  uint32_t *out = to;
  const int kp = (kc + 1) / 2;
  for (int i0 = 0; i0 < mc; i0 += mr) {
    int rows = min_int(mr, mc - i0);
    uint32_t *panel = out + (ptrdiff_t)i0 * kp;
    for (int p = 0; p < kp; p++) {
      const int k = 2 * p, hi = k + 1 < kc;
      for (int r = 0; r < mr; r++) {
        const float *src = A.p + (i0 + r) * A.row;
        panel[(ptrdiff_t)p * mr + r] = r < rows ? bf16_pair(src[k * A.col], hi, hi ? src[(k + 1) * A.col] : 0) : 0;
      }
    }
  }
}

// The AVX-512 kernels' packing: the same panels as pack_a and pack_b, moved 16 floats at a time. A row-major
// operand read along k (A's rows, a transposed B's columns) is transposed in registers: 16 k of each of 16 columns
// (B) or of the panel's mr rows (A) per round, the scalar loops above finishing a k tail or a short panel.

// The 16 x 16 block at src (rows `ld` apart) transposed into dst (rows `dld` apart): dst[i][j] = src[j][i].
__attribute__((target("avx512f"))) static inline void transpose16(const float *src, ptrdiff_t ld, float *dst, ptrdiff_t dld) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * ld);
  // 32-bit, then 64-bit interleaves inside 128-bit lanes, then 128-bit lanes across the register.
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
  }
  // r[4q + c] now holds, in each 128-bit lane l, column 4l + c of rows 4q..4q+3.
  for (int q = 0; q < 4; q += 2)
    for (int c = 0; c < 4; c++) {
      t[4 * q + c] = _mm512_shuffle_f32x4(r[4 * q + c], r[4 * q + 4 + c], 0x88);
      t[4 * q + 4 + c] = _mm512_shuffle_f32x4(r[4 * q + c], r[4 * q + 4 + c], 0xDD);
    }
  for (int c = 0; c < 4; c++) {
    const __m512 a = t[c], b = t[4 + c], x = t[8 + c], y = t[12 + c];
    _mm512_storeu_ps(dst + c * dld, _mm512_shuffle_f32x4(a, x, 0x88));
    _mm512_storeu_ps(dst + (4 + c) * dld, _mm512_shuffle_f32x4(b, y, 0x88));
    _mm512_storeu_ps(dst + (8 + c) * dld, _mm512_shuffle_f32x4(a, x, 0xDD));
    _mm512_storeu_ps(dst + (12 + c) * dld, _mm512_shuffle_f32x4(b, y, 0xDD));
  }
}

// pack_b with AVX-512: a transposed B's full panels transposed 16 x 16 at a time (B's own rows are copied as they are,
// which memcpy does fastest).
__attribute__((target("avx512f"))) static void pack_b512(Operand B, int kc, int nc, int nr, void *to) {
  float *out = to;
  for (int j0 = 0; j0 < nc; j0 += nr) {
    const int cols = min_int(nr, nc - j0);
    float *panel = out + (ptrdiff_t)j0 * kc;
    if (B.row == 1 && B.col != 1 && cols == nr) {
      int k = 0;
      for (; k + 16 <= kc; k += 16)
        for (int v = 0; v < nr; v += 16) transpose16(B.p + (j0 + v) * B.col + k, B.col, panel + (ptrdiff_t)k * nr + v, nr);
      for (; k < kc; k++)
        for (int j = 0; j < nr; j++) panel[(ptrdiff_t)k * nr + j] = B.p[(j0 + j) * B.col + k];
    } else {
      pack_b((Operand){B.p + j0 * B.col, B.row, B.col}, kc, cols, nr, panel);
    }
  }
}

// ---- AVX-512 packing: bf16 rounding on 16 lanes, a transposed A ----
// The bf16 packs below give pack_a_bf16's and pack_b_bf16's panels bit for bit: bf16_bits' integer rounding on 16 lanes (not
// VCVTNEPS2BF16, which flushes denormals). Packing one element at a time took a third of a bf16 product's time.

// bf16_bits of 16 floats, each in the low half of its lane.
__attribute__((target("avx512f"))) static inline __m512i bf16_bits16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  return _mm512_mask_mov_epi32(rounded, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
}

// bf16_pair over 16 lanes: lo's bf16 in the low half, hi's in the high.
__attribute__((target("avx512f"))) static inline __m512 bf16_pairs16(__m512 lo, __m512 hi) {
  return _mm512_castsi512_ps(_mm512_or_si512(bf16_bits16(lo), _mm512_slli_epi32(bf16_bits16(hi), 16)));
}

// 32 consecutive floats as 16 pairs (elements 2i and 2i + 1 in pair i).
__attribute__((target("avx512f"))) static inline __m512 bf16_adjacent(const float *p) {
  const __m256i lo = _mm512_cvtepi32_epi16(bf16_bits16(_mm512_loadu_ps(p)));
  const __m256i hi = _mm512_cvtepi32_epi16(bf16_bits16(_mm512_loadu_ps(p + 16)));
  return _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
}

// A transposed A (the panel's rows contiguous per k) into float panels, or with `pairs` into bf16-pair panels (a
// unit is then two k). Eight units at a time over every panel, so the lines of A read stay in L1 for the panels that
// share them (panel by panel, each k a new line and page: 3072 rows of 1024 k packed in 2.3-3.5 ms, against 0.6-1.1).
// Each store runs 16 - mr lanes into the panel's next unit, which overwrites them; a store that would run past the
// panel's end (into the next panel's first unit) is masked.
__attribute__((target("avx512f"))) static inline void pack_a_transposed512(Operand A, int mc, int kc, int mr, float *out, int pairs) {
  const int units = pairs ? (kc + 1) / 2 : kc;
  for (int u0 = 0; u0 < units; u0 += 8)
    for (int i0 = 0; i0 < mc; i0 += mr) {
      const __mmask16 m = (__mmask16)((1u << min_int(mr, mc - i0)) - 1);
      float *panel = out + (ptrdiff_t)i0 * units;
      for (int u = u0; u < min_int(u0 + 8, units); u++) {
        const int k = pairs ? 2 * u : u;
        __m512 x = _mm512_maskz_loadu_ps(m, A.p + k * A.col + i0);
        if (pairs) x = bf16_pairs16(x, k + 1 < kc ? _mm512_maskz_loadu_ps(m, A.p + (k + 1) * A.col + i0) : _mm512_setzero_ps());
        if ((units - u) * mr >= 16) _mm512_storeu_ps(panel + (ptrdiff_t)u * mr, x);
        else _mm512_mask_storeu_ps(panel + (ptrdiff_t)u * mr, (__mmask16)((1u << mr) - 1), x);
      }
    }
}

// Interleaves 16 consecutive elements of each of mr rows (v[0..mr), mr at most 16) into a panel's order by
// two-source permutes: output vector o holds the panel's elements 16o..16o+15, each taken from its row's register
// of the pair it lies in. Data movement only, so it serves float and bf16-pair panels alike.
typedef struct {
  __m512i index[16];
  __mmask16 from[16][8];
  int mr, pairs;
} Interleave;

__attribute__((target("avx512f"))) static void interleave_init(Interleave *x, int mr) {
  x->mr = mr;
  x->pairs = (mr + 1) / 2;
  for (int o = 0; o < mr; o++) {
    int lanes[16];
    for (int p = 0; p < x->pairs; p++) x->from[o][p] = 0;
    for (int l = 0; l < 16; l++) {
      const int g = 16 * o + l, k = g / mr, r = g % mr;
      lanes[l] = k + 16 * (r & 1);
      x->from[o][r / 2] |= (__mmask16)(1u << l);
    }
    x->index[o] = _mm512_loadu_si512(lanes);
  }
}

// v needs mr + 1 registers: an odd mr's partner register is zeroed here.
__attribute__((target("avx512f"))) static inline void interleave_store(const Interleave *x, __m512 *v, float *dst) {
  if (x->mr & 1) v[x->mr] = _mm512_setzero_ps();
  for (int o = 0; o < x->mr; o++) {
    __m512 y = _mm512_permutex2var_ps(v[0], x->index[o], v[1]);
    for (int p = 1; p < x->pairs; p++) y = _mm512_mask_mov_ps(y, x->from[o][p], _mm512_permutex2var_ps(v[2 * p], x->index[o], v[2 * p + 1]));
    _mm512_storeu_ps(dst + 16 * o, y);
  }
}

// pack_a with AVX-512: a transposed A's rows of the panel are contiguous per k (one move each); A's own rows
// are contiguous along k, so 16 k of the panel's mr rows are interleaved.
__attribute__((target("avx512f"))) static void pack_a512(Operand A, int mc, int kc, int mr, void *to) {
  float *out = to;
  if (A.row == 1) {
    pack_a_transposed512(A, mc, kc, mr, out, 0);
    return;
  }
  Interleave x;
  interleave_init(&x, mr);
  for (int i0 = 0; i0 < mc; i0 += mr) {
    const int rows = min_int(mr, mc - i0);
    float *panel = out + (ptrdiff_t)i0 * kc;
    if (A.col == 1 && rows == mr && mr <= 16) {
      int k = 0;
      for (; k + 16 <= kc; k += 16) {
        __m512 v[17];
        for (int r = 0; r < mr; r++) v[r] = _mm512_loadu_ps(A.p + (i0 + r) * A.row + k);
        interleave_store(&x, v, panel + (ptrdiff_t)k * mr);
      }
      for (; k < kc; k++)
        for (int r = 0; r < mr; r++) panel[(ptrdiff_t)k * mr + r] = A.p[(i0 + r) * A.row + k];
    } else {
      pack_a((Operand){A.p + i0 * A.row, A.row, A.col}, rows, kc, mr, panel);
    }
  }
}

__attribute__((target("avx512f"))) static void pack_b_bf16_512(Operand B, int kc, int nc, int nr, void *to) {
  uint32_t *out = to;
  const int kp = (kc + 1) / 2;
  for (int j0 = 0; j0 < nc; j0 += nr) {
    const int cols = min_int(nr, nc - j0);
    uint32_t *panel = out + (ptrdiff_t)j0 * kp;
    if (B.col == 1) {
      // B's rows k and k + 1 along j: a pair of loads per 16 columns, zeros past the last column.
      for (int p = 0; p < kp; p++) {
        const int k = 2 * p;
        for (int v = 0; v < nr; v += 16) {
          const int left = cols - v;
          const __mmask16 m = left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;
          const __m512 lo = _mm512_maskz_loadu_ps(m, B.p + k * B.row + j0 + v);
          const __m512 hi = k + 1 < kc ? _mm512_maskz_loadu_ps(m, B.p + (k + 1) * B.row + j0 + v) : _mm512_setzero_ps();
          _mm512_storeu_ps((float *)panel + (ptrdiff_t)p * nr + v, bf16_pairs16(lo, hi));
        }
      }
    } else if (B.row == 1 && cols == nr) {
      // A transposed B's columns run along k, so their pairs are adjacent: 16 pairs of each of 16 columns, then
      // transposed in registers as the float panels are.
      int p = 0;
      for (; 2 * p + 32 <= kc; p += 16)
        for (int v = 0; v < nr; v += 16) {
          float block[16 * 16] __attribute__((aligned(64)));
          for (int c = 0; c < 16; c++) _mm512_store_ps(block + 16 * c, bf16_adjacent(B.p + (j0 + v + c) * B.col + 2 * p));
          transpose16(block, 16, (float *)panel + (ptrdiff_t)p * nr + v, nr);
        }
      for (; p < kp; p++) {
        const int k = 2 * p, hi = k + 1 < kc;
        for (int j = 0; j < nr; j++) {
          const float *src = B.p + (j0 + j) * B.col;
          panel[(ptrdiff_t)p * nr + j] = bf16_pair(src[k], hi, hi ? src[k + 1] : 0);
        }
      }
    } else {
      pack_b_bf16((Operand){B.p + j0 * B.col, B.row, B.col}, kc, cols, nr, panel);
    }
  }
}

__attribute__((target("avx512f"))) static void pack_a_bf16_512(Operand A, int mc, int kc, int mr, void *to) {
  uint32_t *out = to;
  const int kp = (kc + 1) / 2;
  if (A.row == 1) {
    pack_a_transposed512(A, mc, kc, mr, (float *)out, 1);
    return;
  }
  Interleave x;
  interleave_init(&x, mr);
  for (int i0 = 0; i0 < mc; i0 += mr) {
    const int rows = min_int(mr, mc - i0);
    uint32_t *panel = out + (ptrdiff_t)i0 * kp;
    if (A.col == 1 && rows == mr && mr <= 16) {
      // A's rows along k: 16 pairs of each row, interleaved as pack_a512 interleaves 16 k.
      int p = 0;
      for (; 2 * p + 32 <= kc; p += 16) {
        __m512 v[17];
        for (int r = 0; r < mr; r++) v[r] = bf16_adjacent(A.p + (i0 + r) * A.row + 2 * p);
        interleave_store(&x, v, (float *)panel + (ptrdiff_t)p * mr);
      }
      for (; p < kp; p++) {
        const int k = 2 * p, hi = k + 1 < kc;
        for (int r = 0; r < mr; r++) {
          const float *src = A.p + (i0 + r) * A.row;
          panel[(ptrdiff_t)p * mr + r] = bf16_pair(src[k], hi, hi ? src[k + 1] : 0);
        }
      }
    } else {
      pack_a_bf16((Operand){A.p + i0 * A.row, A.row, A.col}, rows, kc, mr, panel);
    }
  }
}

// ---- AMX packing ----
// The AMX kernel's panels hold bf16 pairs, as the bf16 kernel's do, in the layout its tiles load: B as the bf16 kernel
// packs it (per k-pair, nr columns of pairs: a B tile is 16 such rows, 64 bytes of each), A as mr rows each holding its
// k-pairs in a row (an A tile is 16 rows, 64 bytes of each). Each panel is padded with zero pairs to a multiple of 16
// k-pairs, so that every tile is whole. AVX-512 packs where the CPU has it (every AMX CPU does); the scalar forms serve
// the rest, and the emulated tiles of the tests (test/native/amx-emulation.h) on CPUs without AVX-512.

// k-pairs per AMX tile row (64 bytes); a panel's k-pairs are rounded up to whole tiles.
#define KPAIRS_AMX 16
static inline int amx_depth(int kc) { return panel_depth(kc, 1, KPAIRS_AMX); }

static void pack_b_amx(Operand B, int kc, int nc, int nr, void *to) {
  uint32_t *out = to;
  const int kp = (kc + 1) / 2, depth = amx_depth(kc), wide = __builtin_cpu_supports("avx512f");
  for (int j0 = 0; j0 < nc; j0 += nr) {
    uint32_t *panel = out + (ptrdiff_t)j0 * depth;
    const Operand part = {B.p + j0 * B.col, B.row, B.col};
    const int cols = min_int(nr, nc - j0);
    if (wide) pack_b_bf16_512(part, kc, cols, nr, panel);
    else pack_b_bf16(part, kc, cols, nr, panel);
    memset(panel + (ptrdiff_t)kp * nr, 0, sizeof(uint32_t) * (size_t)(depth - kp) * (size_t)nr);
  }
}

// k-pairs [p0, p1) of panel rows [r0, r1), A's rows from `rows` on and pairs past kc's being zeros.
static void pack_a_amx_part(Operand A, int kc, int rows, uint32_t *panel, int depth, int r0, int r1, int p0, int p1) {
  for (int r = r0; r < r1; r++) {
    uint32_t *row = panel + (ptrdiff_t)r * depth;
    if (r >= rows) {
      memset(row + p0, 0, sizeof(uint32_t) * (size_t)(p1 - p0));
      continue;
    }
    const float *src = A.p + r * A.row;
    for (int p = p0; p < p1; p++) {
      const int k = 2 * p, hi = k + 1 < kc;
      row[p] = k < kc ? bf16_pair(src[k * A.col], hi, hi ? src[(k + 1) * A.col] : 0) : 0;
    }
  }
}

// The whole blocks of a panel with AVX-512: every row's first *pairs k-pairs (those whose k both lie in kc, in blocks
// of 16) for A's own rows, 32 floats a row at a time; for a transposed A, 16 x 16 blocks of pairs transposed in
// registers, over the panel's first *fast rows (whole groups of 16). Sets how far it went.
__attribute__((target("avx512f"))) static void pack_a_amx512(Operand A, int kc, int rows, uint32_t *panel, int depth, int *fast, int *pairs) {
  *pairs = kc / 32 * 16;
  *fast = A.col == 1 ? rows : A.row == 1 ? rows / 16 * 16 : 0;
  if (A.col == 1)
    for (int r = 0; r < rows; r++)
      for (int p = 0; p < *pairs; p += 16) _mm512_storeu_ps((float *)panel + (ptrdiff_t)r * depth + p, bf16_adjacent(A.p + r * A.row + 2 * p));
  else
    for (int r0 = 0; r0 < *fast; r0 += 16)
      for (int p = 0; p < *pairs; p += 16) {
        float block[16 * 16] __attribute__((aligned(64)));
        for (int u = 0; u < 16; u++) {
          const float *k = A.p + 2 * (p + u) * A.col + r0;
          _mm512_store_ps(block + 16 * u, bf16_pairs16(_mm512_loadu_ps(k), _mm512_loadu_ps(k + A.col)));
        }
        transpose16(block, 16, (float *)panel + (ptrdiff_t)r0 * depth + p, depth);
      }
}

static void pack_a_amx(Operand A, int mc, int kc, int mr, void *to) {
  uint32_t *out = to;
  const int depth = amx_depth(kc), wide = __builtin_cpu_supports("avx512f");
  for (int i0 = 0; i0 < mc; i0 += mr) {
    uint32_t *panel = out + (ptrdiff_t)i0 * depth;
    const Operand part = {A.p + i0 * A.row, A.row, A.col};
    const int rows = min_int(mr, mc - i0);
    int fast = 0, pairs = 0;
    if (wide) pack_a_amx512(part, kc, rows, panel, depth, &fast, &pairs);
    pack_a_amx_part(part, kc, rows, panel, depth, 0, fast, pairs, depth);
    pack_a_amx_part(part, kc, rows, panel, depth, fast, mr, 0, depth);
  }
}

// ---- AVX2 packing ----
// The AVX2 kernels' panels (MR256 rows of A, NR256 columns of B), moved a vector at a time: element by element,
// with a memcpy call per k, packing took 10-20% of a BERT-base product on one Zen 3 core (a transposed A's the most).
// Operands read along k are transposed 8 x 8 in registers; short panels and k tails take the scalar loops above.

// r[j] becomes column j of the 8 x 8 block whose rows r[0..8) were: r[j][i] = old r[i][j].
__attribute__((target("avx2"))) static inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int c = 0; c < 4; c++) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

// One k of an A panel: the low six lanes of x (no store past the panel's end).
__attribute__((target("avx2"))) static inline void store6(float *dst, __m256 x) {
  _mm_storeu_ps(dst, _mm256_castps256_ps128(x));
  _mm_storel_pi((__m64 *)(dst + 4), _mm256_extractf128_ps(x, 1));
}

// pack_a for MR256 rows. A transposed A has the panel's rows contiguous per k: one 24-byte move each, eight k at a
// time over every panel so the lines of A read stay in L1 for the panels sharing them (see pack_a_transposed512).
// A's own rows run along k: 8 k of the six rows (and two zero rows) are transposed per round.
__attribute__((target("avx2"))) static void pack_a256(Operand A, int mc, int kc, int mr, void *to) {
  float *out = to;
  if (mr != MR256 || (A.row != 1 && A.col != 1)) {
    pack_a(A, mc, kc, mr, to);
    return;
  }
  if (A.row == 1) {
    for (int k0 = 0; k0 < kc; k0 += 8)
      for (int i0 = 0; i0 < mc; i0 += MR256) {
        const int rows = min_int(MR256, mc - i0);
        float *panel = out + (ptrdiff_t)i0 * kc;
        for (int k = k0; k < min_int(k0 + 8, kc); k++) {
          const float *src = A.p + k * A.col + i0;
          float *dst = panel + (ptrdiff_t)k * MR256;
          if (rows == MR256) memcpy(dst, src, sizeof(float) * MR256);
          else
            for (int r = 0; r < MR256; r++) dst[r] = r < rows ? src[r] : 0;
        }
      }
    return;
  }
  for (int i0 = 0; i0 < mc; i0 += MR256) {
    const int rows = min_int(MR256, mc - i0);
    float *panel = out + (ptrdiff_t)i0 * kc;
    if (rows < MR256) {
      pack_a((Operand){A.p + i0 * A.row, A.row, A.col}, rows, kc, MR256, panel);
      continue;
    }
    int k = 0;
    for (; k + 8 <= kc; k += 8) {
      __m256 v[8];
      for (int r = 0; r < 8; r++) v[r] = r < MR256 ? _mm256_loadu_ps(A.p + (i0 + r) * A.row + k) : _mm256_setzero_ps();
      transpose8(v);
      for (int j = 0; j < 8; j++) store6(panel + (ptrdiff_t)(k + j) * MR256, v[j]);
    }
    for (; k < kc; k++)
      for (int r = 0; r < MR256; r++) panel[(ptrdiff_t)k * MR256 + r] = A.p[(i0 + r) * A.row + k];
  }
}

// pack_b for NR256 columns. B's own rows are copied 64 bytes per k, eight k at a time over every panel (each k of a
// wide B is a new page); a transposed B's columns run along k, so 8 k of 8 columns are transposed per round.
__attribute__((target("avx2"))) static void pack_b256(Operand B, int kc, int nc, int nr, void *to) {
  float *out = to;
  if (nr != NR256 || (B.row != 1 && B.col != 1)) {
    pack_b(B, kc, nc, nr, to);
    return;
  }
  const int full = nc / NR256 * NR256;
  if (B.col == 1) {
    for (int k0 = 0; k0 < kc; k0 += 8)
      for (int j0 = 0; j0 < full; j0 += NR256)
        for (int k = k0; k < min_int(k0 + 8, kc); k++)
          memcpy(out + (ptrdiff_t)j0 * kc + (ptrdiff_t)k * NR256, B.p + k * B.row + j0, sizeof(float) * NR256);
  } else {
    for (int j0 = 0; j0 < full; j0 += NR256) {
      float *panel = out + (ptrdiff_t)j0 * kc;
      int k = 0;
      for (; k + 8 <= kc; k += 8)
        for (int h = 0; h < NR256; h += 8) {
          __m256 v[8];
          for (int c = 0; c < 8; c++) v[c] = _mm256_loadu_ps(B.p + (j0 + h + c) * B.col + k);
          transpose8(v);
          for (int j = 0; j < 8; j++) _mm256_store_ps(panel + (ptrdiff_t)(k + j) * NR256 + h, v[j]);
        }
      for (; k < kc; k++)
        for (int j = 0; j < NR256; j++) panel[(ptrdiff_t)k * NR256 + j] = B.p[(j0 + j) * B.col + k];
    }
  }
  if (full < nc) pack_b((Operand){B.p + full * B.col, B.row, B.col}, kc, nc - full, NR256, out + (ptrdiff_t)full * kc);
}

// A tile reads A at ap + r * aRow + k * aCol (in ELEMs): a packed panel (1, mr) or, for a small product, A in place.
typedef void (*Tile)(int kc, const void *ap, ptrdiff_t aRow, ptrdiff_t aCol, const void *bp, float *c, ptrdiff_t cRow, int rows, int cols, int accumulate);
typedef void (*Pack)(Operand X, int rows, int cols, int block, void *out);

// One MR512 x NR512 tile: starts from zero, or from C's partial sums when `accumulate`; stores rows < rows, cols < cols.
// Six rows of four zmm (24 accumulators): on one Zen 5 core at BERT-base's products, 191 GFLOP/s against 185 for
// 4 x 64 and 125 for 12 x 32 (best of five each, every shape and transpose); 64 columns fit a head's 64-wide products.
// (On one Zen 4 core, with KC 384, 4 x 64 had measured 86 against 83 for 6 x 64.) STEP is the multiply-add, fused or not; the bf16 tile
// steps over pairs of k (LOAD_A broadcasts a pair, STEP is one VDPBF16PS).
#define TILE512(NAME, TARGET, ELEM, STEP, LOAD_A, KSTEPS)                                                                                           \
  __attribute__((target(TARGET))) static void NAME(int kc, const void *apv, ptrdiff_t aRow, ptrdiff_t aCol, const void *bpv, float *c, ptrdiff_t cRow, int rows, int cols, \
                                                   int accumulate) {                                                                                \
    const ELEM *restrict ap = apv;                                                                                                                  \
    const ELEM *restrict bp = bpv;                                                                                                                  \
    /* Rows past `rows` repeat the last one (never stored), so an A read in place is never read past its end. */                                    \
    ptrdiff_t aAt[MR512];                                                                                                                           \
    for (int r = 0; r < MR512; r++) aAt[r] = (r < rows ? r : rows - 1) * aRow;                                                                     \
    __m512 acc[MR512][NV512];                                                                                                                       \
    __mmask16 mask[NV512];                                                                                                                          \
    for (int v = 0; v < NV512; v++) {                                                                                                               \
      const int left = cols - 16 * v;                                                                                                               \
      mask[v] = left >= 16 ? 0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : 0;                                                                \
    }                                                                                                                                               \
    _Pragma("GCC unroll 8") for (int r = 0; r < MR512; r++) _Pragma("GCC unroll 8") for (int v = 0; v < NV512; v++) acc[r][v] =                   \
        accumulate && r < rows ? _mm512_maskz_loadu_ps(mask[v], c + r * cRow + 16 * v) : _mm512_setzero_ps();                                      \
    for (int k = 0; k < (KSTEPS); k++) {                                                                                                            \
      __m512 b[NV512];                                                                                                                              \
      _Pragma("GCC unroll 8") for (int v = 0; v < NV512; v++) b[v] = _mm512_load_ps((const float *)(bp + 16 * v));                                 \
      _Pragma("GCC unroll 8") for (int r = 0; r < MR512; r++) {                                                                                    \
        const __m512 a = LOAD_A(ap + aAt[r]);                                                                                                      \
        _Pragma("GCC unroll 8") for (int v = 0; v < NV512; v++) acc[r][v] = STEP(acc[r][v], a, b[v]);                                               \
      }                                                                                                                                             \
      ap += aCol;                                                                                                                                   \
      bp += NR512;                                                                                                                                  \
    }                                                                                                                                               \
    _Pragma("GCC unroll 8") for (int r = 0; r < MR512; r++) if (r < rows) _Pragma("GCC unroll 8") for (int v = 0; v < NV512; v++)                  \
        _mm512_mask_storeu_ps(c + r * cRow + 16 * v, mask[v], acc[r][v]);                                                                          \
  }

#define MULADD512(acc, a, b) _mm512_add_ps((acc), _mm512_mul_ps((a), (b)))
#define FMA512(acc, a, b) _mm512_fmadd_ps((a), (b), (acc))
#define DPBF16(acc, a, b) _mm512_dpbf16_ps((acc), (__m512bh)_mm512_castps_si512(a), (__m512bh)_mm512_castps_si512(b))
#define SET1(p) _mm512_set1_ps(*(p))
#define SET1_PAIR(p) _mm512_castsi512_ps(_mm512_set1_epi32((int)*(p)))

TILE512(tile512, "avx512f", float, MULADD512, SET1, kc)
TILE512(tile512fma, "avx512f", float, FMA512, SET1, kc)
TILE512(tile512bf16, "avx512f,avx512bf16", uint32_t, DPBF16, SET1_PAIR, (kc + 1) / 2)

// The AVX2 tile, MR256 x NR256; partial columns go through a small buffer (AVX2 has no masked float moves worth the lanes).
#define TILE256(NAME, TARGET, STEP)                                                                                                                 \
  __attribute__((target(TARGET))) static void NAME(int kc, const void *apv, ptrdiff_t aRow, ptrdiff_t aCol, const void *bpv, float *c, ptrdiff_t cRow, int rows, int cols, \
                                                   int accumulate) {                                                                                \
    const float *restrict ap = apv;                                                                                                                 \
    const float *restrict bp = bpv;                                                                                                                 \
    ptrdiff_t aAt[MR256];                                                                                                                           \
    for (int r = 0; r < MR256; r++) aAt[r] = (r < rows ? r : rows - 1) * aRow;                                                                     \
    __m256 acc[MR256][2];                                                                                                                           \
    float edge[MR256][NR256] __attribute__((aligned(32)));                                                                                          \
    const int full = cols == NR256;                                                                                                                 \
    if (!full) memset(edge, 0, sizeof edge);                                                                                                        \
    if (accumulate && !full)                                                                                                                        \
      for (int r = 0; r < rows; r++) memcpy(edge[r], c + r * cRow, sizeof(float) * cols);                                                         \
    _Pragma("GCC unroll 8") for (int r = 0; r < MR256; r++) {                                                                                      \
      acc[r][0] = _mm256_setzero_ps();                                                                                                              \
      acc[r][1] = _mm256_setzero_ps();                                                                                                              \
    }                                                                                                                                               \
    if (accumulate) {                                                                                                                               \
      _Pragma("GCC unroll 8") for (int r = 0; r < MR256; r++) {                                                                                    \
        if (r < rows) {                                                                                                                             \
          const float *src = full ? c + r * cRow : edge[r];                                                                                         \
          acc[r][0] = _mm256_loadu_ps(src);                                                                                                         \
          acc[r][1] = _mm256_loadu_ps(src + 8);                                                                                                     \
        }                                                                                                                                           \
      }                                                                                                                                             \
    }                                                                                                                                               \
    for (int k = 0; k < kc; k++) {                                                                                                                  \
      const __m256 b0 = _mm256_load_ps(bp);                                                                                                         \
      const __m256 b1 = _mm256_load_ps(bp + 8);                                                                                                     \
      _Pragma("GCC unroll 8") for (int r = 0; r < MR256; r++) {                                                                                    \
        const __m256 a = _mm256_broadcast_ss(ap + aAt[r]);                                                                                         \
        acc[r][0] = STEP(acc[r][0], a, b0);                                                                                                         \
        acc[r][1] = STEP(acc[r][1], a, b1);                                                                                                         \
      }                                                                                                                                             \
      ap += aCol;                                                                                                                                   \
      bp += NR256;                                                                                                                                  \
    }                                                                                                                                               \
    _Pragma("GCC unroll 8") for (int r = 0; r < MR256; r++) {                                                                                      \
      if (r < rows) {                                                                                                                               \
        float *dst = full ? c + r * cRow : edge[r];                                                                                                 \
        _mm256_storeu_ps(dst, acc[r][0]);                                                                                                           \
        _mm256_storeu_ps(dst + 8, acc[r][1]);                                                                                                       \
      }                                                                                                                                             \
    }                                                                                                                                               \
    if (!full)                                                                                                                                      \
      for (int r = 0; r < rows; r++) memcpy(c + r * cRow, edge[r], sizeof(float) * cols);                                                         \
  }

#define MULADD256(acc, a, b) _mm256_add_ps((acc), _mm256_mul_ps((a), (b)))
#define FMA256(acc, a, b) _mm256_fmadd_ps((a), (b), (acc))

TILE256(tile256, "avx2", MULADD256)
TILE256(tile256fma, "avx2,fma", FMA256)

// The AMX tile (Intel Sapphire Rapids and later): TDPBF16PS adds to a 16 x 16 float32 tile the products of a 16-row
// tile of 16 k-pairs (A) and a tile of 16 k-pairs by 16 columns (B), 16 x 16 x 32 multiply-adds in one instruction.
// A 32 x 32 block of C is four such tiles (tmm0-3), from two A tiles (tmm4, tmm5) and two B tiles (tmm6, tmm7).
#define MRAMX 32
#define NRAMX 32

// Eight tiles of 16 rows x 64 bytes (palette 1).
typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} TileConfig;
static const TileConfig TILES = {1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

// The tile instructions. GCC's tileloadd and ldtilecfg do not tell the compiler all the memory they read, hence a
// barrier before each (a C buffer written just before must be there). test/native/amx-emulation.h defines these as C over
// emulated registers, so that the tests run this kernel on CPUs without AMX.
#ifndef AMX_EMULATED
#define AMX_FUNCTION __attribute__((target("amx-tile,amx-bf16")))
#define TILE_CONFIG(cfg)                 \
  do {                                   \
    __asm__ volatile("" ::: "memory");   \
    _tile_loadconfig(cfg);               \
  } while (0)
#define TILE_LOAD(t, p, stride)          \
  do {                                   \
    __asm__ volatile("" ::: "memory");   \
    _tile_loadd(t, p, stride);           \
  } while (0)
#define TILE_STORE(t, p, stride) _tile_stored(t, p, stride)
#define TILE_ZERO(t) _tile_zero(t)
#define TILE_DP(c, a, b) _tile_dpbf16ps(c, a, b)

// AMX needs the CPU's tile unit (CPUID leaf 7: AMX-TILE, AMX-BF16; with AVX512_BF16, whose packing it shares), the
// system's state for the tiles (XCR0 bits 17 and 18) and, on Linux, the process's permission to use their 8 KB
// (arch_prctl ARCH_REQ_XCOMP_PERM), asked once.
static int amx_ready(void) {
  static _Atomic int ready = -1;
  if (ready < 0) {
    unsigned a = 0, b = 0, c = 0, d = 0, lo = 0, hi = 0;
    int ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1) && (d >> 22 & 1) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bf16") && __get_cpuid(1, &a, &b, &c, &d) && (c >> 27 & 1);
    if (ok) __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    ok = ok && (lo >> 17 & 3) == 3 && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
    ready = ok;
  }
  return ready;
}
#endif

// The tile configuration is per thread, loaded on the thread's first AMX product.
static _Thread_local int tiles_configured;
AMX_FUNCTION static inline void configure_tiles(void) {
  if (!tiles_configured) {
    TILE_CONFIG(&TILES);
    tiles_configured = 1;
  }
}

// One MRAMX x NRAMX block of C over kc k (the panels' pairs padded to whole tiles); C's partial sums go in and out
// through a buffer where the block is partial. A is always packed (aRow, aCol unused).
AMX_FUNCTION static void tile_amx(int kc, const void *apv, ptrdiff_t aRow, ptrdiff_t aCol, const void *bpv, float *c, ptrdiff_t cRow, int rows, int cols,
                                  int accumulate) {
  (void)aRow;
  (void)aCol;
  configure_tiles();
  const int depth = amx_depth(kc);
  const char *a = apv, *b = bpv;
  const long aStride = 4L * depth, bStride = 4L * NRAMX;
  float edge[MRAMX * NRAMX] __attribute__((aligned(64)));
  const int full = rows == MRAMX && cols == NRAMX;
  float *out = full ? c : edge;
  const ptrdiff_t ld = full ? cRow : NRAMX;
  if (accumulate && !full) {
    memset(edge, 0, sizeof edge);
    for (int r = 0; r < rows; r++) memcpy(edge + r * NRAMX, c + r * cRow, sizeof(float) * cols);
  }
  if (accumulate) {
    TILE_LOAD(0, out, 4 * ld);
    TILE_LOAD(1, out + 16, 4 * ld);
    TILE_LOAD(2, out + 16 * ld, 4 * ld);
    TILE_LOAD(3, out + 16 * ld + 16, 4 * ld);
  } else {
    TILE_ZERO(0);
    TILE_ZERO(1);
    TILE_ZERO(2);
    TILE_ZERO(3);
  }
  for (int p = 0; p < depth; p += KPAIRS_AMX) {
    TILE_LOAD(4, a + 4 * p, aStride);
    TILE_LOAD(5, a + 16 * aStride + 4 * p, aStride);
    TILE_LOAD(6, b + p * bStride, bStride);
    TILE_LOAD(7, b + p * bStride + 64, bStride);
    TILE_DP(0, 4, 6);
    TILE_DP(1, 4, 7);
    TILE_DP(2, 5, 6);
    TILE_DP(3, 5, 7);
  }
  TILE_STORE(0, out, 4 * ld);
  TILE_STORE(1, out + 16, 4 * ld);
  TILE_STORE(2, out + 16 * ld, 4 * ld);
  TILE_STORE(3, out + 16 * ld + 16, 4 * ld);
  if (!full)
    for (int r = 0; r < rows; r++) memcpy(c + r * cRow, edge + r * NRAMX, sizeof(float) * cols);
}

// Register-only throughput of one kernel's multiply-add on this core: CHAINS independent accumulators, each
// acc = acc * y + c (or its fused or bf16 form), so nothing can be hoisted and the ports, not latency, bound it.
#define CHAINS512 24
#define CHAINS256 12
#define PEAK512(NAME, TARGET, STEP, FLOPS, Y, Z)                                                             \
  __attribute__((target(TARGET))) static double NAME(long iterations) {                                      \
    __m512 acc[CHAINS512];                                                                                  \
    const __m512 y = (Y), z = (Z);                                                                           \
    _Pragma("GCC unroll 32") for (int i = 0; i < CHAINS512; i++) acc[i] = _mm512_set1_ps((float)i);           \
    for (long n = 0; n < iterations; n++)                                                                    \
      _Pragma("GCC unroll 32") for (int i = 0; i < CHAINS512; i++) acc[i] = STEP(acc[i], y, z);               \
    float sink = 0;                                                                                          \
    _Pragma("GCC unroll 32") for (int i = 0; i < CHAINS512; i++) sink += _mm512_reduce_add_ps(acc[i]);        \
    volatile float keep = sink;                                                                              \
    (void)keep;                                                                                              \
    return (double)iterations * CHAINS512 * (FLOPS);                                                         \
  }
#define PEAK256(NAME, TARGET, STEP)                                                                          \
  __attribute__((target(TARGET))) static double NAME(long iterations) {                                      \
    __m256 acc[CHAINS256];                                                                                  \
    const __m256 y = _mm256_set1_ps(0.999999f), z = _mm256_set1_ps(1e-3f);                                   \
    _Pragma("GCC unroll 32") for (int i = 0; i < CHAINS256; i++) acc[i] = _mm256_set1_ps((float)i);           \
    for (long n = 0; n < iterations; n++)                                                                    \
      _Pragma("GCC unroll 32") for (int i = 0; i < CHAINS256; i++) acc[i] = STEP(acc[i], y, z);               \
    float out[8], sink = 0;                                                                                  \
    _Pragma("GCC unroll 32") for (int i = 0; i < CHAINS256; i++) {                                           \
      _mm256_storeu_ps(out, acc[i]);                                                                         \
      for (int l = 0; l < 8; l++) sink += out[l];                                                            \
    }                                                                                                        \
    volatile float keep = sink;                                                                              \
    (void)keep;                                                                                              \
    return (double)iterations * CHAINS256 * 16;                                                              \
  }
// acc * y + z: the chained form of a multiply-add (the tile's is acc + a * b; the rate is the same).
#define CHAIN_MULADD512(acc, y, z) _mm512_add_ps(_mm512_mul_ps((acc), (y)), (z))
#define CHAIN_FMA512(acc, y, z) _mm512_fmadd_ps((acc), (y), (z))
#define CHAIN_DPBF16(acc, y, z) _mm512_dpbf16_ps((acc), (__m512bh)_mm512_castps_si512(y), (__m512bh)_mm512_castps_si512(z))
#define CHAIN_MULADD256(acc, y, z) _mm256_add_ps(_mm256_mul_ps((acc), (y)), (z))
#define CHAIN_FMA256(acc, y, z) _mm256_fmadd_ps((acc), (y), (z))

#define NEAR_ONE _mm512_set1_ps(0.999999f)
#define SMALL _mm512_set1_ps(1e-3f)
// bfloat16 pairs (0.5, 0.5) and (1e-3, 1e-3): acc grows by 1e-3 a step, far from overflow.
#define HALF_PAIR _mm512_castsi512_ps(_mm512_set1_epi32(0x3F003F00))
#define SMALL_PAIR _mm512_castsi512_ps(_mm512_set1_epi32(0x3A833A83))
PEAK512(peak512, "avx512f", CHAIN_MULADD512, 32, NEAR_ONE, SMALL)
PEAK512(peak512fma, "avx512f", CHAIN_FMA512, 32, NEAR_ONE, SMALL)
PEAK512(peak512bf16, "avx512f,avx512bf16", CHAIN_DPBF16, 64, HALF_PAIR, SMALL_PAIR)
PEAK256(peak256, "avx2", CHAIN_MULADD256)
PEAK256(peak256fma, "avx2,fma", CHAIN_FMA256)

// TDPBF16PS's rate: four tiles accumulating the products of tiles of bf16 pairs (1e-3, 1e-3), far from overflow.
AMX_FUNCTION static double peak_amx(long iterations) {
  configure_tiles();
  uint32_t pairs[16 * 16] __attribute__((aligned(64)));
  float sink[16 * 16] __attribute__((aligned(64)));
  for (int i = 0; i < 16 * 16; i++) pairs[i] = 0x3A833A83u;
  TILE_ZERO(0);
  TILE_ZERO(1);
  TILE_ZERO(2);
  TILE_ZERO(3);
  TILE_LOAD(4, pairs, 64);
  TILE_LOAD(5, pairs, 64);
  TILE_LOAD(6, pairs, 64);
  TILE_LOAD(7, pairs, 64);
  for (long n = 0; n < iterations; n++) {
    TILE_DP(0, 4, 6);
    TILE_DP(1, 4, 7);
    TILE_DP(2, 5, 6);
    TILE_DP(3, 5, 7);
  }
  TILE_STORE(0, sink, 64);
  volatile float keep = sink[0];
  (void)keep;
  return (double)iterations * 4 * (2 * 16 * 16 * 32);
}

// pairs and pad give a kernel's panel_depth.
typedef struct {
  const char *name;
  Tile tile;
  Pack pack_a, pack_b;
  double (*peak)(long iterations);
  int mr, nr, pairs, pad;
} Kernel;

// Of one arithmetic, the preferred kernel first (src/engine/native.ts takes the first this CPU runs).
static const Kernel KERNELS[] = {
    {"avx512f", tile512, pack_a512, pack_b512, peak512, MR512, NR512, 0, 1},
    {"avx2", tile256, pack_a256, pack_b256, peak256, MR256, NR256, 0, 1},
    {"avx512f-fma", tile512fma, pack_a512, pack_b512, peak512fma, MR512, NR512, 0, 1},
    {"avx2-fma", tile256fma, pack_a256, pack_b256, peak256fma, MR256, NR256, 0, 1},
    {"amx-bf16", tile_amx, pack_a_amx, pack_b_amx, peak_amx, MRAMX, NRAMX, 1, KPAIRS_AMX},
    {"avx512bf16", tile512bf16, pack_a_bf16_512, pack_b_bf16_512, peak512bf16, MR512, NR512, 1, 1},
};
#define KERNEL_COUNT 6

static int supported(int kernel) {
  __builtin_cpu_init();
  switch (kernel) {
    case 0:
    case 2:
      return __builtin_cpu_supports("avx512f");
    case 1:
      return __builtin_cpu_supports("avx2");
    case 3:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case 4:
      return amx_ready();
    case 5:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    default:
      return 0;
  }
}

static void gemm(const Kernel *kn, Scratch *s, Operand A, Operand B, float *C, ptrdiff_t cRow, int M, int K, int N) {
  if (M <= 0 || N <= 0) return;
  // A product whose A is one block (an attention head's: 128 x 64 or 128 x 128) reads A in place: packing it took a
  // quarter of such a product's time, and its rows are few enough to stay in cache. The bf16 tile reads packed pairs.
  const int inPlace = !kn->pairs && M <= MC && K <= KC;
  // K = 0 still runs one (empty) block, so C is set to zeros.
  for (int jc = 0; jc < N; jc += NC) {
    int nc = min_int(NC, N - jc);
    for (int pc = 0; pc == 0 || pc < K; pc += KC) {
      int kc = min_int(KC, K - pc);
      const int depth = panel_depth(kc, kn->pairs, kn->pad);
      kn->pack_b((Operand){B.p + pc * B.row + jc * B.col, B.row, B.col}, kc, nc, kn->nr, s->b);
      for (int ic = 0; ic < M; ic += MC) {
        int mc = min_int(MC, M - ic);
        if (!inPlace) kn->pack_a((Operand){A.p + ic * A.row + pc * A.col, A.row, A.col}, mc, kc, kn->mr, s->a);
        for (int jr = 0; jr < nc; jr += kn->nr) {
          for (int ir = 0; ir < mc; ir += kn->mr) {
            const void *ap = inPlace ? (const void *)(A.p + (ic + ir) * A.row + pc * A.col) : (const void *)((const float *)s->a + (ptrdiff_t)ir * depth);
            kn->tile(kc, ap, inPlace ? A.row : 1, inPlace ? A.col : kn->mr, (const float *)s->b + (ptrdiff_t)jr * depth, C + (ic + ir) * cRow + jc + jr, cRow,
                     min_int(kn->mr, mc - ir), min_int(kn->nr, nc - jr), pc > 0);
          }
        }
      }
    }
  }
}

// ---- Erf-GELU ----
// kernels.wat's gelu, 16 or 8 lanes at a time: the same float32 operations in the same order (no fused multiply-add,
// the same constants rounded to float), so every y and dy/dx is the wasm kernel's bit for bit.

// exp(x) for x clamped to [-87, 88]: kernels.wat $exp4. One body per width (PS: the float vectors' intrinsic prefix;
// ROUND rounds to the nearest integer, ties to even; AS_FLOAT reinterprets an integer vector).
#define EXP(NAME, TARGET, VEC, PS, ROUND, AS_FLOAT)                                                                                                 \
  __attribute__((target(TARGET))) static inline VEC NAME(VEC x) {                                                                                   \
    x = PS##_min_ps(PS##_max_ps(x, PS##_set1_ps(-87.f)), PS##_set1_ps(88.f));                                                                       \
    const VEC k = ROUND(PS##_mul_ps(x, PS##_set1_ps(1.44269504088896341f)));                                                                        \
    const VEC r = PS##_sub_ps(PS##_sub_ps(x, PS##_mul_ps(k, PS##_set1_ps(0.693359375f))), PS##_mul_ps(k, PS##_set1_ps(-2.12194440e-4f)));           \
    VEC p = PS##_mul_ps(PS##_set1_ps(1.9875691500e-4f), r);                                                                                         \
    p = PS##_mul_ps(PS##_add_ps(p, PS##_set1_ps(1.3981999507e-3f)), r);                                                                             \
    p = PS##_mul_ps(PS##_add_ps(p, PS##_set1_ps(8.3334519073e-3f)), r);                                                                             \
    p = PS##_mul_ps(PS##_add_ps(p, PS##_set1_ps(4.1665795894e-2f)), r);                                                                             \
    p = PS##_mul_ps(PS##_add_ps(p, PS##_set1_ps(1.6666665459e-1f)), r);                                                                             \
    p = PS##_add_ps(p, PS##_set1_ps(5.0000001201e-1f));                                                                                             \
    const VEC e = PS##_add_ps(PS##_add_ps(PS##_mul_ps(p, PS##_mul_ps(r, r)), r), PS##_set1_ps(1.f));                                                \
    return PS##_mul_ps(e, AS_FLOAT(PS##_slli_epi32(PS##_add_epi32(PS##_cvttps_epi32(k), PS##_set1_epi32(127)), 23)));                               \
  }
#define ROUND512(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define ROUND256(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
EXP(exp512, "avx512f", __m512, _mm512, ROUND512, _mm512_castsi512_ps)
EXP(exp256, "avx2", __m256, _mm256, ROUND256, _mm256_castsi256_ps)

// y = x Phi(x) and dy/dx = Phi(x) + x phi(x) for x[0, n): kernels.wat gelu. One body per width, as EXP (ABS, NEGATE:
// the sign bit cleared or flipped; IF_NEGATIVE(v, a, b): a where v < 0, else b); a partial last vector goes through a
// zero-padded copy, so every element takes the same operations.
#define GELU(NAME, TARGET, VEC, PS, LANES, EXP, ABS, NEGATE, IF_NEGATIVE)                                                                           \
  __attribute__((target(TARGET))) static inline void NAME##_lanes(const float *x, float *y, float *d) {                                             \
    const VEC one = PS##_set1_ps(1.f), v = PS##_loadu_ps(x);                                                                                        \
    const VEC a = ABS(PS##_mul_ps(v, PS##_set1_ps(0.70710678118654752f)));                                                                          \
    const VEC t = PS##_div_ps(one, PS##_add_ps(one, PS##_mul_ps(PS##_set1_ps(0.3275911f), a)));                                                     \
    const VEC e = EXP(NEGATE(PS##_mul_ps(a, a)));                                                                                                   \
    VEC p = PS##_mul_ps(PS##_set1_ps(1.061405429f), t);                                                                                             \
    p = PS##_mul_ps(PS##_add_ps(p, PS##_set1_ps(-1.453152027f)), t);                                                                                \
    p = PS##_mul_ps(PS##_add_ps(p, PS##_set1_ps(1.421413741f)), t);                                                                                 \
    p = PS##_mul_ps(PS##_add_ps(p, PS##_set1_ps(-0.284496736f)), t);                                                                                \
    p = PS##_add_ps(p, PS##_set1_ps(0.254829592f));                                                                                                 \
    const VEC q = PS##_mul_ps(PS##_mul_ps(PS##_mul_ps(t, p), e), PS##_set1_ps(0.5f));                                                               \
    const VEC cdf = IF_NEGATIVE(v, q, PS##_sub_ps(one, q));                                                                                         \
    PS##_storeu_ps(y, PS##_mul_ps(v, cdf));                                                                                                         \
    PS##_storeu_ps(d, PS##_add_ps(cdf, PS##_mul_ps(v, PS##_mul_ps(e, PS##_set1_ps(0.3989422804014327f)))));                                         \
  }                                                                                                                                                 \
  __attribute__((target(TARGET))) static void NAME(const float *x, float *y, float *d, int64_t n) {                                                 \
    int64_t i = 0;                                                                                                                                  \
    for (; i + LANES <= n; i += LANES) NAME##_lanes(x + i, y + i, d + i);                                                                           \
    if (i < n) {                                                                                                                                    \
      float in[LANES] = {0}, out[LANES], slope[LANES];                                                                                              \
      memcpy(in, x + i, sizeof(float) * (n - i));                                                                                                   \
      NAME##_lanes(in, out, slope);                                                                                                                 \
      memcpy(y + i, out, sizeof(float) * (n - i));                                                                                                  \
      memcpy(d + i, slope, sizeof(float) * (n - i));                                                                                                \
    }                                                                                                                                               \
  }
#define ABS512(x) _mm512_abs_ps(x)
#define NEGATE512(x) _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)))
#define IF_NEGATIVE512(v, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), b, a)
#define ABS256(x) _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)))
#define NEGATE256(x) _mm256_xor_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)))
#define IF_NEGATIVE256(v, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ))
GELU(gelu512, "avx512f", __m512, _mm512, 16, exp512, ABS512, NEGATE512, IF_NEGATIVE512)
GELU(gelu256, "avx2", __m256, _mm256, 8, exp256, ABS256, NEGATE256, IF_NEGATIVE256)

// ---- Weighted gradients ----
// g = w t, or g + w t when accumulating, each element in doubles with one rounding to float at the end: model.ts's
// JavaScript loop (a pass's gradients weighted into the step's), bit for bit. One body per width (PD: the double
// vectors' intrinsic prefix, LANES of them; LOAD and STORE move LANES floats).
#define WEIGHTED(NAME, TARGET, LANES, VECD, PD, LOAD, STORE)                                                                                        \
  __attribute__((target(TARGET))) static void NAME(float *g, const float *t, size_t n, double w, int accumulate) {                                  \
    size_t i = 0;                                                                                                                                   \
    for (; i + LANES <= n; i += LANES) {                                                                                                            \
      VECD x = PD##_mul_pd(PD##_set1_pd(w), PD##_cvtps_pd(LOAD(t + i)));                                                                            \
      if (accumulate) x = PD##_add_pd(PD##_cvtps_pd(LOAD(g + i)), x);                                                                               \
      STORE(g + i, PD##_cvtpd_ps(x));                                                                                                               \
    }                                                                                                                                               \
    for (; i < n; i++) g[i] = (float)(accumulate ? (double)g[i] + w * (double)t[i] : w * (double)t[i]);                                             \
  }
WEIGHTED(weighted512, "avx512f", 8, __m512d, _mm512, _mm256_loadu_ps, _mm256_storeu_ps)
WEIGHTED(weighted256, "avx2", 4, __m256d, _mm256, _mm_loadu_ps, _mm_storeu_ps)

// ---- Embedding rows ----
// dst row (dstRows ? dstRows[t] : t) += w times src row (srcRows ? srcRows[t] : t), for t in [0, n) in order (a row
// several tokens share sums them in token order): kernels.ts's embedding sum (rows gathered from a table) and the
// word-table gradient (rows scattered into it). With w = 1 a float add, else the weighted pass's accumulate (in
// doubles rounded once), as the JavaScript loops compute. One body per width (WEIGHTED_ROWS: that width's weighted pass).
#define ADD_INDEXED_ROWS(NAME, TARGET, LANES, PS, WEIGHTED_ROWS)                                                                                    \
  __attribute__((target(TARGET))) static void NAME(float *dst, const int32_t *dstRows, const float *src, const int32_t *srcRows, size_t n,         \
                                                   size_t width, double w) {                                                                        \
    for (size_t t = 0; t < n; t++) {                                                                                                                \
      float *d = dst + (dstRows ? (size_t)dstRows[t] : t) * width;                                                                                  \
      const float *x = src + (srcRows ? (size_t)srcRows[t] : t) * width;                                                                            \
      if (w != 1) {                                                                                                                                 \
        WEIGHTED_ROWS(d, x, width, w, 1);                                                                                                           \
        continue;                                                                                                                                   \
      }                                                                                                                                             \
      size_t j = 0;                                                                                                                                 \
      for (; j + LANES <= width; j += LANES) PS##_storeu_ps(d + j, PS##_add_ps(PS##_loadu_ps(d + j), PS##_loadu_ps(x + j)));                       \
      for (; j < width; j++) d[j] += x[j];                                                                                                          \
    }                                                                                                                                               \
  }
ADD_INDEXED_ROWS(addIndexedRows512, "avx512f", 16, _mm512, weighted512)
ADD_INDEXED_ROWS(addIndexedRows256, "avx2", 8, _mm256, weighted256)

// ---- AdamW ----
// optimizer.wat's adamw (and optimizer.ts's adamwRange) over p, g, m, v [lo, hi): the same double operations in the
// same order, rounded to float where they round, so the same bits. One body per width, as WEIGHTED.
#define ADAMW(NAME, TARGET, LANES, VECD, PD, LOAD, STORE)                                                                                           \
  __attribute__((target(TARGET))) static void NAME(float *p, const float *g, float *m, float *v, size_t lo, size_t hi,                              \
                                                   const double *k) {                                                                               \
    const double stepSize = k[0], b1 = k[1], c1 = k[2], b2 = k[3], c2 = k[4], eps = k[5], decay = k[6];                                             \
    size_t i = lo;                                                                                                                                  \
    for (; i + LANES <= hi; i += LANES) {                                                                                                           \
      const VECD gj = PD##_cvtps_pd(LOAD(g + i));                                                                                                   \
      const VECD mj = PD##_add_pd(PD##_mul_pd(PD##_set1_pd(b1), PD##_cvtps_pd(LOAD(m + i))), PD##_mul_pd(PD##_set1_pd(c1), gj));                    \
      const VECD vj =                                                                                                                               \
          PD##_add_pd(PD##_mul_pd(PD##_set1_pd(b2), PD##_cvtps_pd(LOAD(v + i))), PD##_mul_pd(PD##_mul_pd(PD##_set1_pd(c2), gj), gj));               \
      STORE(m + i, PD##_cvtpd_ps(mj));                                                                                                              \
      STORE(v + i, PD##_cvtpd_ps(vj));                                                                                                              \
      const VECD step = PD##_div_pd(PD##_mul_pd(PD##_set1_pd(stepSize), mj), PD##_add_pd(PD##_sqrt_pd(vj), PD##_set1_pd(eps)));                     \
      const VECD pj = PD##_cvtps_pd(PD##_cvtpd_ps(PD##_sub_pd(PD##_cvtps_pd(LOAD(p + i)), step)));                                                  \
      STORE(p + i, PD##_cvtpd_ps(PD##_sub_pd(pj, PD##_mul_pd(PD##_set1_pd(decay), pj))));                                                           \
    }                                                                                                                                               \
    for (; i < hi; i++) {                                                                                                                           \
      const double gj = g[i], mj = b1 * m[i] + c1 * gj, vj = b2 * v[i] + c2 * gj * gj;                                                              \
      m[i] = (float)mj;                                                                                                                             \
      v[i] = (float)vj;                                                                                                                             \
      const double pj = (float)(p[i] - stepSize * mj / (sqrt(vj) + eps));                                                                           \
      p[i] = (float)(pj - decay * pj);                                                                                                              \
    }                                                                                                                                               \
  }
ADAMW(adamw512, "avx512f", 8, __m512d, _mm512, _mm256_loadu_ps, _mm256_storeu_ps)
ADAMW(adamw256, "avx2", 4, __m256d, _mm256, _mm_loadu_ps, _mm_storeu_ps)

// ---- Child-Tuning-F's mask ----
// g[0, 16) where `in` is set, each element times `factor` where its decision bit is set and times +0.0 where not, in
// doubles: optimizer.wat's fapply.
__attribute__((target("avx512f"))) static inline void keep16(float *g, uint32_t decisions, __mmask16 in, __m512d factor) {
  const __m512 x = _mm512_maskz_loadu_ps(in, g);
  const __m512d a = _mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)), _mm512_maskz_mov_pd((__mmask8)decisions, factor));
  const __m512d b = _mm512_mul_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1))),
                                  _mm512_maskz_mov_pd((__mmask8)(decisions >> 8), factor));
  const __m512d y = _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps(a))), _mm256_castps_pd(_mm512_cvtpd_ps(b)), 1);
  _mm512_mask_storeu_ps(g, in, _mm512_castpd_ps(y));
}

// optimizer.wat's fapply over [lo, hi) (lo a multiple of 8): the keep bitset applied with `scale`, sixteen at a time.
__attribute__((target("avx512f"))) static void fapply512(float *g, const uint8_t *bits, int64_t lo, int64_t hi, double scale) {
  const __m512d factor = _mm512_set1_pd(scale);
  for (int64_t j = lo; j < hi; j += 16) {
    const int64_t rest = hi - j;
    const __mmask16 in = rest >= 16 ? 0xFFFF : (__mmask16)((1u << rest) - 1);
    const uint32_t decisions = (bits[j >> 3] | (rest > 8 ? (uint32_t)bits[(j >> 3) + 1] << 8 : 0)) & in;
    keep16(g + j, decisions, in, factor);
  }
}

// optimizer.wat's fdraw and fapply (and fmask4) over [lo, hi) in chunks of `chunk` elements (lo a multiple of 8, and
// chunk too unless it covers the range), each chunk drawn from its own stream: the same keep bits (each element's
// 16-bit draw below threshold; the last byte's bits past hi zero), each element times scale or +0.0 in doubles, and
// the count kept. Chunk i's xoshiro128** state is states[4i, 4i + 4) (rng.ts seedState of its seed). Sixteen chunks
// at once, lane k of a vector generator running chunk k's stream: eight steps give each
// chunk eight draws, sixteen decisions; the 8 x 16 block of draws is transposed so a chunk's eight sit in one half of
// a vector, whose 16-bit compares give its sixteen bits in element order.
__attribute__((target("avx512f,avx512bw"))) static int64_t fmask512(float *g, uint8_t *bits, int64_t lo, int64_t hi, int64_t chunk, const uint32_t *states, int threshold, double scale) {
  const __m512i below = _mm512_set1_epi16((short)(threshold - 1));
  // Quadword picks of two vectors (a: 0-7, b: 8-15): a's and b's first 128-bit blocks interleaved, then their last.
  const __m512i first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), last = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
  const __m512d factor = _mm512_set1_pd(scale);
  const int64_t chunks = (hi - lo + chunk - 1) / chunk;
  int64_t kept = 0;
  for (int64_t c0 = 0; c0 < chunks; c0 += 16) {
    const int count = (int)(chunks - c0 < 16 ? chunks - c0 : 16);
    _Alignas(64) uint32_t state[4][16] = {{0}};
    int64_t length[16];
    float *gk[16];
    uint8_t *bk[16];
    for (int k = 0; k < count; k++) {
      for (int w = 0; w < 4; w++) state[w][k] = states[4 * (c0 + k) + w];
      const int64_t start = lo + (c0 + k) * chunk;
      length[k] = hi - start < chunk ? hi - start : chunk;
      gk[k] = g + start;
      bk[k] = bits + (start >> 3);
    }
    __m512i s0 = _mm512_load_si512(state[0]), s1 = _mm512_load_si512(state[1]);
    __m512i s2 = _mm512_load_si512(state[2]), s3 = _mm512_load_si512(state[3]);
    // Only the last chunk may be shorter, so lengths never increase with k.
    for (int64_t e = 0; e < length[0]; e += 16) {
      __m512i r[8];
      for (int j = 0; j < 8; j++) {
        const __m512i x = _mm512_rol_epi32(_mm512_add_epi32(_mm512_slli_epi32(s1, 2), s1), 7);
        r[j] = _mm512_add_epi32(_mm512_slli_epi32(x, 3), x);
        const __m512i t = _mm512_slli_epi32(s1, 9);
        s2 = _mm512_xor_si512(s2, s0);
        s3 = _mm512_xor_si512(s3, s1);
        s1 = _mm512_xor_si512(s1, s2);
        s0 = _mm512_xor_si512(s0, s3);
        s2 = _mm512_xor_si512(s2, t);
        s3 = _mm512_rol_epi32(s3, 11);
      }
      // Per 128-bit block b, u[c] holds chunk 4b + c's draws 0-3 and u[4 + c] its draws 4-7.
      __m512i u[8];
      for (int h = 0; h < 8; h += 4) {
        const __m512i t0 = _mm512_unpacklo_epi32(r[h], r[h + 1]), t1 = _mm512_unpackhi_epi32(r[h], r[h + 1]);
        const __m512i t2 = _mm512_unpacklo_epi32(r[h + 2], r[h + 3]), t3 = _mm512_unpackhi_epi32(r[h + 2], r[h + 3]);
        u[h] = _mm512_unpacklo_epi64(t0, t2);
        u[h + 1] = _mm512_unpackhi_epi64(t0, t2);
        u[h + 2] = _mm512_unpacklo_epi64(t1, t3);
        u[h + 3] = _mm512_unpackhi_epi64(t1, t3);
      }
      // keep[c]: chunk c's sixteen decisions in its low half, chunk 4 + c's in its high half; keep[4 + c] the same
      // for chunks 8 + c and 12 + c.
      uint32_t keep[8];
      for (int c = 0; c < 4; c++) {
        keep[c] = _mm512_cmple_epu16_mask(_mm512_permutex2var_epi64(u[c], first, u[4 + c]), below);
        keep[4 + c] = _mm512_cmple_epu16_mask(_mm512_permutex2var_epi64(u[c], last, u[4 + c]), below);
      }
      for (int k = 0; k < count && e < length[k]; k++) {
        const int64_t rest = length[k] - e;
        const __mmask16 in = rest >= 16 ? 0xFFFF : (__mmask16)((1u << rest) - 1);
        const uint32_t decisions = (keep[(k & 3) | ((k >> 1) & 4)] >> ((k & 4) << 2)) & in;
        keep16(gk[k] + e, decisions, in, factor);
        bk[k][e >> 3] = (uint8_t)decisions;
        if (rest > 8) bk[k][(e >> 3) + 1] = (uint8_t)(decisions >> 8);
        kept += __builtin_popcount(decisions);
      }
    }
  }
  return kept;
}

// fapply512 eight elements at a time, for CPUs with AVX2 but no AVX-512: a byte of the bitset becomes eight lanes of
// all ones or zeros (bit k of the byte in lane k), which select scale's bits or +0.0 as the factor.
__attribute__((target("avx2"))) static void fapply256(float *g, const uint8_t *bits, int64_t lo, int64_t hi, double scale) {
  const __m256i lanes = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256d factor = _mm256_set1_pd(scale);
  int64_t j = lo;
  for (; j + 8 <= hi; j += 8) {
    const __m256i keep = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits[j >> 3]), lanes), lanes);
    const __m256 x = _mm256_loadu_ps(g + j);
    const __m256d a = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_and_pd(factor, _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(keep)))));
    const __m256d b = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), _mm256_and_pd(factor, _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(keep, 1)))));
    _mm256_storeu_ps(g + j, _mm256_set_m128(_mm256_cvtpd_ps(b), _mm256_cvtpd_ps(a)));
  }
  for (; j < hi; j++) g[j] = (float)((double)g[j] * ((bits[j >> 3] >> (j & 7)) & 1 ? scale : 0.0));
}

// The passes at one vector width: AVX-512 (fmask also needs AVX-512BW) or AVX2. A run takes the width of its matrix
// kernel (src/engine/native.ts), so CHILDTUNE_NATIVE_KERNEL=avx2 runs the AVX2 forms on an AVX-512 CPU too.
typedef struct {
  void (*gelu)(const float *x, float *y, float *d, int64_t n);
  void (*weighted)(float *g, const float *t, size_t n, double w, int accumulate);
  void (*adamw)(float *p, const float *g, float *m, float *v, size_t lo, size_t hi, const double *k);
  void (*fapply)(float *g, const uint8_t *bits, int64_t lo, int64_t hi, double scale);
  int64_t (*fmask)(float *g, uint8_t *bits, int64_t lo, int64_t hi, int64_t chunk, const uint32_t *states, int threshold, double scale);
  void (*addIndexedRows)(float *dst, const int32_t *dstRows, const float *src, const int32_t *srcRows, size_t n, size_t width, double w);
} Passes;

static const Passes PASSES512 = {gelu512, weighted512, adamw512, fapply512, fmask512, addIndexedRows512};
static const Passes PASSES256 = {gelu256, weighted256, adamw256, fapply256, NULL, addIndexedRows256};

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

// A call on the heap: exactly `count` arguments, the heap (an ArrayBuffer, at `heapAt`) into heap and bytes, each other
// an integer into v; else an error naming `usage` is thrown and 0 returned.
static int heap_call(napi_env env, napi_callback_info info, size_t count, int heapAt, int64_t *v, void **heap, size_t *bytes, void **data,
                     const char *usage) {
  napi_value argv[32];
  size_t argc = count;
  int ok = count <= 32 && napi_get_cb_info(env, info, &argc, argv, NULL, data) == napi_ok && argc == count;
  for (int i = 0; ok && i < (int)count; i++)
    ok = i == heapAt ? napi_get_arraybuffer_info(env, argv[i], heap, bytes) == napi_ok : napi_get_value_int64(env, argv[i], &v[i]) == napi_ok;
  if (!ok) {
    char message[160];
    snprintf(message, sizeof message, "childtune native: %s", usage);
    napi_throw_error(env, NULL, message);
  }
  return ok;
}

// gemm(kernel, heap, a, aRow, aCol, aE0, aE1, b, bRow, bCol, bE0, bE1, c, cRow, cE0, cE1, M, K, N, n0, n1):
// over entries e0 < n0, e1 < n1, C_e = A_e x B_e, where operand X_e starts at byte offset x + 4*(e0*xE0 + e1*xE1)
// of `heap` (an ArrayBuffer) and strides count float32 elements.
static napi_value js_gemm(napi_env env, napi_callback_info info) {
  int64_t v[21];
  void *heap;
  size_t bytes;
  if (!heap_call(env, info, 21, 1, v, &heap, &bytes, NULL, "gemm takes 21 arguments: a kernel, the heap and 19 integers")) return NULL;
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

// peak(kernel, iterations): GFLOP/s of the kernel's multiply-add on this thread's core, from `iterations` rounds of
// the register-only loop (see PEAK512), timed in this thread's CPU time so a busy machine's preemptions do not count;
// the bench's measured peak and the choice between exact and fused kernels.
static napi_value js_peak(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t kernel, iterations;
  if (argc != 2 || napi_get_value_int64(env, argv[0], &kernel) != napi_ok || napi_get_value_int64(env, argv[1], &iterations) != napi_ok ||
      kernel < 0 || kernel >= KERNEL_COUNT || iterations < 1) {
    napi_throw_error(env, NULL, "childtune native: peak takes a kernel index and a positive iteration count");
    return NULL;
  }
  if (!supported((int)kernel)) {
    napi_throw_error(env, NULL, "childtune native: that kernel is not supported on this CPU");
    return NULL;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  const double flops = KERNELS[kernel].peak((long)iterations);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  const double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  napi_value out;
  CHECK(napi_create_double(env, flops / seconds / 1e9, &out));
  return out;
}

// gelu(heap, x, y, d, n): kernels.wat's gelu over n floats at byte offsets x (in), y and d (out) of `heap`, on
// AVX-512 (exported only where the CPU has it).
static napi_value js_gelu(napi_env env, napi_callback_info info) {
  int64_t v[5];
  void *heap;
  size_t bytes;
  const Passes *passes;
  if (!heap_call(env, info, 5, 0, v, &heap, &bytes, (void **)&passes, "gelu takes the heap and 4 integers")) return NULL;
  const int64_t n = v[4];
  int ok = n >= 0;
  for (int i = 1; i < 4; i++) ok = ok && v[i] >= 0 && v[i] + 4 * n <= (int64_t)bytes;
  if (!ok) {
    napi_throw_range_error(env, NULL, "childtune native: a gelu operand reaches outside the heap");
    return NULL;
  }
  char *base = heap;
  passes->gelu((const float *)(base + v[1]), (float *)(base + v[2]), (float *)(base + v[3]), n);
  return NULL;
}

// A pass's call: exactly `count` arguments into argv, and the Passes of its width; 0 otherwise.
static int pass_call(napi_env env, napi_callback_info info, size_t count, napi_value *argv, const Passes **passes) {
  size_t argc = count;
  return napi_get_cb_info(env, info, &argc, argv, NULL, (void **)passes) == napi_ok && argc == count;
}

// A typed array argument's elements (a view of shared memory too) and length; 0 for anything but a `want` array.
static int typed_array(napi_env env, napi_value value, napi_typedarray_type want, void *data, size_t *length) {
  napi_typedarray_type type;
  napi_value buffer;
  size_t offset;
  return napi_get_typedarray_info(env, value, &type, length, (void **)data, &buffer, &offset) == napi_ok && type == want;
}

// weighted(g, t, w, accumulate): g and t Float32Arrays of one length (g may be shared memory); see weighted512.
static napi_value js_weighted(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  const Passes *passes;
  const int called = pass_call(env, info, 4, argv, &passes);
  float *g, *t;
  size_t gLength, tLength;
  double w;
  bool accumulate;
  if (!called || !typed_array(env, argv[0], napi_float32_array, &g, &gLength) || !typed_array(env, argv[1], napi_float32_array, &t, &tLength) || gLength != tLength ||
      napi_get_value_double(env, argv[2], &w) != napi_ok || napi_get_value_bool(env, argv[3], &accumulate) != napi_ok) {
    napi_throw_error(env, NULL, "childtune native: weighted takes two Float32Arrays of one length, a weight and a boolean");
    return NULL;
  }
  passes->weighted(g, t, gLength, w, accumulate);
  return NULL;
}

// adamw(p, g, m, v, lo, hi, stepSize, b1, c1, b2, c2, eps, decay): Float32Arrays (shared memory included) at least hi
// long; see adamw512.
static napi_value js_adamw(napi_env env, napi_callback_info info) {
  napi_value argv[13];
  const Passes *passes;
  const int called = pass_call(env, info, 13, argv, &passes);
  float *arrays[4];
  size_t length, shortest = SIZE_MAX;
  int ok = called;
  for (int i = 0; ok && i < 4; i++) {
    ok = typed_array(env, argv[i], napi_float32_array, &arrays[i], &length);
    if (ok && length < shortest) shortest = length;
  }
  int64_t lo = 0, hi = 0;
  double k[7];
  ok = ok && napi_get_value_int64(env, argv[4], &lo) == napi_ok && napi_get_value_int64(env, argv[5], &hi) == napi_ok;
  for (int i = 0; ok && i < 7; i++) ok = napi_get_value_double(env, argv[6 + i], &k[i]) == napi_ok;
  if (!ok || lo < 0 || hi < lo || (size_t)hi > shortest) {
    napi_throw_error(env, NULL, "childtune native: adamw takes four Float32Arrays, a range inside them and seven numbers");
    return NULL;
  }
  passes->adamw(arrays[0], arrays[1], arrays[2], arrays[3], (size_t)lo, (size_t)hi, k);
  return NULL;
}

// The (g, bits, lo, hi) that fmask and fapply begin with: a Float32Array and a Uint8Array bitset (shared memory
// included) covering [0, hi), lo a multiple of 8; 0 for anything else.
static int bitset_range(napi_env env, napi_value *argv, float **g, uint8_t **bits, int64_t *lo, int64_t *hi) {
  size_t gLength, bitsLength;
  return typed_array(env, argv[0], napi_float32_array, g, &gLength) && typed_array(env, argv[1], napi_uint8_array, bits, &bitsLength) &&
         napi_get_value_int64(env, argv[2], lo) == napi_ok && napi_get_value_int64(env, argv[3], hi) == napi_ok && *lo >= 0 && *lo % 8 == 0 &&
         *hi >= *lo && (size_t)*hi <= gLength && (size_t)(*hi + 7) / 8 <= bitsLength;
}

// fmask(g, bits, lo, hi, chunk, states, threshold, scale): g a Float32Array and bits a Uint8Array (shared memory
// included) covering [0, hi), states a Uint32Array with four generator words per chunk; returns how many were kept.
// See fmask512.
static napi_value js_fmask(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  const Passes *passes;
  const int called = pass_call(env, info, 8, argv, &passes);
  float *g;
  uint8_t *bits;
  uint32_t *states;
  size_t stateWords;
  int64_t lo = 0, hi = 0, chunk = 0;
  int32_t threshold = 0;
  double scale = 0;
  int ok = called && bitset_range(env, argv, &g, &bits, &lo, &hi) && napi_get_value_int64(env, argv[4], &chunk) == napi_ok &&
           typed_array(env, argv[5], napi_uint32_array, &states, &stateWords) && napi_get_value_int32(env, argv[6], &threshold) == napi_ok &&
           napi_get_value_double(env, argv[7], &scale) == napi_ok;
  ok = ok && chunk > 0 && (chunk % 8 == 0 || hi - lo <= chunk) && 4 * (size_t)((hi - lo + chunk - 1) / chunk) <= stateWords && threshold >= 1 &&
       threshold <= 65536;
  if (!ok) {
    napi_throw_error(env, NULL,
                     "childtune native: fmask takes a Float32Array and a Uint8Array bitset covering a range that starts on a multiple of 8, a chunk "
                     "length that is one (or covers the range), a Uint32Array with four state words per chunk, a threshold from 1 to 65536 and a scale");
    return NULL;
  }
  napi_value result;
  CHECK(napi_create_int64(env, passes->fmask(g, bits, lo, hi, chunk, states, threshold, scale), &result));
  return result;
}

// fapply(g, bits, lo, hi, scale): g a Float32Array and bits a Uint8Array (shared memory included) covering [0, hi), lo
// a multiple of 8. See fapply512.
static napi_value js_fapply(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  const Passes *passes;
  const int called = pass_call(env, info, 5, argv, &passes);
  float *g;
  uint8_t *bits;
  int64_t lo = 0, hi = 0;
  double scale = 0;
  if (!called || !bitset_range(env, argv, &g, &bits, &lo, &hi) || napi_get_value_double(env, argv[4], &scale) != napi_ok) {
    napi_throw_error(env, NULL, "childtune native: fapply takes a Float32Array and a Uint8Array bitset covering a range that starts on a multiple of 8, and a scale");
    return NULL;
  }
  passes->fapply(g, bits, lo, hi, scale);
  return NULL;
}

// A row argument: null, or an Int32Array of at least n row numbers each below `rows`; 0 when it is neither.
static int row_numbers(napi_env env, napi_value value, size_t n, size_t rows, int32_t **out) {
  napi_valuetype type;
  size_t length;
  *out = NULL;
  if (napi_typeof(env, value, &type) != napi_ok) return 0;
  if (type == napi_null) return 1;
  if (!typed_array(env, value, napi_int32_array, out, &length) || length < n) return 0;
  for (size_t t = 0; t < n; t++)
    if ((*out)[t] < 0 || (size_t)(*out)[t] >= rows) return 0;
  return 1;
}

// addIndexedRows(dst, dstRows, src, srcRows, n, width, w): Float32Arrays of whole rows of `width` floats, Int32Arrays of row
// numbers or null (row t), n rows; every row addressed is checked to lie inside its array. See addIndexedRows512.
static napi_value js_add_indexed_rows(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  const Passes *passes;
  const int called = pass_call(env, info, 7, argv, &passes);
  float *dst = NULL, *src = NULL;
  int32_t *dstRows = NULL, *srcRows = NULL;
  size_t dstLength = 0, srcLength = 0;
  int64_t n = -1, width = 0;
  double w = 0;
  int ok = called && typed_array(env, argv[0], napi_float32_array, &dst, &dstLength) && typed_array(env, argv[2], napi_float32_array, &src, &srcLength) &&
           napi_get_value_int64(env, argv[4], &n) == napi_ok && napi_get_value_int64(env, argv[5], &width) == napi_ok &&
           napi_get_value_double(env, argv[6], &w) == napi_ok && n >= 0 && width > 0;
  ok = ok && row_numbers(env, argv[1], (size_t)n, dstLength / (size_t)width, &dstRows) && row_numbers(env, argv[3], (size_t)n, srcLength / (size_t)width, &srcRows);
  ok = ok && (dstRows || (size_t)n * (size_t)width <= dstLength) && (srcRows || (size_t)n * (size_t)width <= srcLength);
  if (!ok) {
    napi_throw_range_error(env, NULL, "childtune native: addIndexedRows takes two Float32Arrays of rows, row numbers (Int32Arrays or null) inside them, a count, a width and a weight");
    return NULL;
  }
  passes->addIndexedRows(dst, dstRows, src, srcRows, (size_t)n, (size_t)width, w);
  return NULL;
}

// exports[name] = a function calling fn with `data`.
static napi_status export_function(napi_env env, napi_value exports, const char *name, napi_callback fn, const void *data) {
  napi_value f;
  napi_status status = napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, (void *)data, &f);
  return status == napi_ok ? napi_set_named_property(env, exports, name, f) : status;
}

NAPI_MODULE_INIT() {
  Scratch *s = calloc(1, sizeof(Scratch));
  // Largest panels over every kernel (a bf16 panel, padded to 16 pairs, is at most a float one of KC): A is MC x KC (MC
  // is a multiple of every MR), B is KC x NC.
  s->a = aligned_alloc(64, sizeof(float) * MC * KC);
  s->b = aligned_alloc(64, sizeof(float) * KC * NC);
  if (!s || !s->a || !s->b || napi_set_instance_data(env, s, free_scratch, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "childtune native: out of memory for the packing buffers");
    return NULL;
  }
  napi_value kernels;
  CHECK(export_function(env, exports, "gemm", js_gemm, NULL));
  CHECK(export_function(env, exports, "peak", js_peak, NULL));
  // passes: the other passes per vector width this CPU runs (avx512f, avx2), each an object of functions.
  napi_value widths;
  CHECK(napi_create_object(env, &widths));
  const struct {
    const char *name;
    const Passes *passes;
    int runs, fmask;
  } forms[2] = {{"avx512f", &PASSES512, supported(0), __builtin_cpu_supports("avx512bw")}, {"avx2", &PASSES256, supported(1), 0}};
  for (int i = 0; i < 2; i++) {
    if (!forms[i].runs) continue;
    napi_value set;
    const Passes *p = forms[i].passes;
    CHECK(napi_create_object(env, &set));
    CHECK(export_function(env, set, "gelu", js_gelu, p));
    CHECK(export_function(env, set, "weighted", js_weighted, p));
    CHECK(export_function(env, set, "adamw", js_adamw, p));
    CHECK(export_function(env, set, "fapply", js_fapply, p));
    CHECK(export_function(env, set, "addIndexedRows", js_add_indexed_rows, p));
    if (forms[i].fmask) CHECK(export_function(env, set, "fmask", js_fmask, p));
    CHECK(napi_set_named_property(env, widths, forms[i].name, set));
  }
  CHECK(napi_set_named_property(env, exports, "passes", widths));
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
  // The cache blocks, so tests can reach past each of them.
  napi_value blocks, size;
  CHECK(napi_create_object(env, &blocks));
  const int sizes[3] = {KC, MC, NC};
  const char *names[3] = {"kc", "mc", "nc"};
  for (int i = 0; i < 3; i++) {
    CHECK(napi_create_int32(env, sizes[i], &size));
    CHECK(napi_set_named_property(env, blocks, names[i], size));
  }
  CHECK(napi_set_named_property(env, exports, "blocks", blocks));
  // cpu: the vendor, family, model and stepping CPUID reports (family and model as Intel and AMD define them: base,
  // plus extended where the base family is 15, or 6 for the model), which name the design runtime.kernels: auto
  // measured (src/engine/native.ts keeps each design's measurement).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  char vendor[13] = {0};
  int id[3] = {0, 0, 0};
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx)) {
    memcpy(vendor, &ebx, 4);
    memcpy(vendor + 4, &edx, 4);
    memcpy(vendor + 8, &ecx, 4);
  }
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
    const int base = (int)((eax >> 8) & 0xF);
    id[0] = base + (base == 0xF ? (int)((eax >> 20) & 0xFF) : 0);
    id[1] = (int)((eax >> 4) & 0xF) + (base == 0xF || base == 6 ? (int)((eax >> 16) & 0xF) << 4 : 0);
    id[2] = (int)(eax & 0xF);
  }
  napi_value cpu, field;
  CHECK(napi_create_object(env, &cpu));
  CHECK(napi_create_string_utf8(env, vendor, NAPI_AUTO_LENGTH, &field));
  CHECK(napi_set_named_property(env, cpu, "vendor", field));
  const char *fields[3] = {"family", "model", "stepping"};
  for (int i = 0; i < 3; i++) {
    CHECK(napi_create_int32(env, id[i], &field));
    CHECK(napi_set_named_property(env, cpu, fields[i], field));
  }
  CHECK(napi_set_named_property(env, exports, "cpu", cpu));
  return exports;
}
