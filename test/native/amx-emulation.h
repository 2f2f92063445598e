// AMX's tile instructions in C, for tests on CPUs without AMX: scripts/build-native.mjs --amx-emulation builds
// native/gemm.c with this header first, and its amx-bf16 kernel then runs on these registers. Each follows the
// pseudocode of Intel's Software Developer's Manual (LDTILECFG, TILELOADD, TILESTORED, TILEZERO, TDPBF16PS). A
// TDPBF16PS row sums the even and the odd k of its k-pairs apart (each a float32 multiply-add, exact here since a
// product of two bfloat16s is exact in float32), then adds the two sums, then that to C; denormal inputs read as
// zero and denormal results are flushed to zero.
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE 1
#define AMX_EMULATED 1
#define AMX_FUNCTION

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int rows, colsb;
  uint8_t data[16][64];
} EmulatedTile;
static _Thread_local EmulatedTile emulated[8];

// What the hardware faults on (#GP for a bad configuration, #UD for tiles that do not fit each other) aborts here.
static void emulated_check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "amx-emulation: %s\n", what);
    abort();
  }
}

static void emulated_config(const void *cfg) {
  const uint8_t *c = cfg;
  emulated_check(c[0] == 1 && c[1] == 0, "LDTILECFG: palette 1, start_row 0");
  for (int i = 2; i < 16; i++) emulated_check(c[i] == 0, "LDTILECFG: reserved bytes are zero");
  for (int t = 8; t < 16; t++) emulated_check(c[16 + 2 * t] == 0 && c[17 + 2 * t] == 0 && c[48 + t] == 0, "LDTILECFG: palette 1 has 8 tiles");
  for (int t = 0; t < 8; t++) {
    emulated[t].rows = c[48 + t];
    emulated[t].colsb = c[16 + 2 * t] | c[17 + 2 * t] << 8;
    emulated_check(emulated[t].rows <= 16 && emulated[t].colsb <= 64, "LDTILECFG: at most 16 rows of 64 bytes");
  }
}

static void emulated_load(int t, const void *p, long stride) {
  emulated_check(emulated[t].rows > 0, "TILELOADD: a configured tile");
  memset(emulated[t].data, 0, sizeof emulated[t].data);
  for (int r = 0; r < emulated[t].rows; r++) memcpy(emulated[t].data[r], (const char *)p + r * stride, (size_t)emulated[t].colsb);
}

static void emulated_store(int t, void *p, long stride) {
  for (int r = 0; r < emulated[t].rows; r++) memcpy((char *)p + r * stride, emulated[t].data[r], (size_t)emulated[t].colsb);
}

// A denormal as a zero of its sign (DAZ on inputs, FTZ on results).
static inline float flushed(float x) { return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x; }

// A tile row's bfloat16 values as floats.
static void emulated_row(const uint8_t *row, int colsb, float *out) {
  for (int i = 0; i < colsb / 2; i++) {
    const uint32_t u = (uint32_t)(row[2 * i] | row[2 * i + 1] << 8) << 16;
    memcpy(out + i, &u, sizeof u);
    out[i] = flushed(out[i]);
  }
}

static void emulated_dpbf16ps(int ct, int at, int bt) {
  EmulatedTile *c = &emulated[ct], *a = &emulated[at], *b = &emulated[bt];
  emulated_check(c->rows > 0 && c->colsb % 4 == 0 && a->colsb % 4 == 0 && b->colsb % 4 == 0, "TDPBF16PS: configured tiles of whole dwords");
  emulated_check(c->colsb == b->colsb && a->colsb / 4 == b->rows && c->rows == a->rows, "TDPBF16PS: C is A's rows by B's columns");
  const int pairs = a->colsb / 4, columns = c->colsb / 4;
  float bs[16][32];
  for (int k = 0; k < pairs; k++) emulated_row(b->data[k], b->colsb, bs[k]);
  for (int m = 0; m < c->rows; m++) {
    // sums[2n + j]: column n's sum over the k-pairs' element j (even k, odd k).
    float as[32], sums[32] = {0}, acc[16];
    emulated_row(a->data[m], a->colsb, as);
    for (int k = 0; k < pairs; k++)
      for (int i = 0; i < 2 * columns; i++) sums[i] = flushed(sums[i] + as[2 * k + (i & 1)] * bs[k][i]);
    memcpy(acc, c->data[m], sizeof(float) * (size_t)columns);
    for (int n = 0; n < columns; n++) acc[n] = flushed(acc[n] + flushed(sums[2 * n] + sums[2 * n + 1]));
    memcpy(c->data[m], acc, sizeof(float) * (size_t)columns);
  }
}

#define TILE_CONFIG(cfg) emulated_config(cfg)
#define TILE_LOAD(t, p, stride) emulated_load(t, p, stride)
#define TILE_STORE(t, p, stride) emulated_store(t, p, stride)
#define TILE_ZERO(t) memset(emulated[t].data, 0, sizeof emulated[t].data)
#define TILE_DP(c, a, b) emulated_dpbf16ps(c, a, b)

static int amx_ready(void) { return 1; }
