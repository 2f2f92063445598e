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

#include <stdint.h>
#include <string.h>

typedef struct {
  int rows, colsb;
  uint8_t data[16][64];
} EmulatedTile;
static _Thread_local EmulatedTile emulated[8];

static void emulated_config(const void *cfg) {
  const uint8_t *c = cfg;
  for (int t = 0; t < 8; t++) {
    emulated[t].rows = c[48 + t];
    emulated[t].colsb = c[16 + 2 * t] | c[17 + 2 * t] << 8;
  }
}

static void emulated_load(int t, const void *p, long stride) {
  memset(emulated[t].data, 0, sizeof emulated[t].data);
  for (int r = 0; r < emulated[t].rows; r++) memcpy(emulated[t].data[r], (const char *)p + r * stride, (size_t)emulated[t].colsb);
}

static void emulated_store(int t, void *p, long stride) {
  for (int r = 0; r < emulated[t].rows; r++) memcpy((char *)p + r * stride, emulated[t].data[r], (size_t)emulated[t].colsb);
}

static float emulated_bf16(const uint8_t *at) {
  uint32_t u = (uint32_t)(at[0] | at[1] << 8) << 16;
  if ((u & 0x7F800000u) == 0) u &= 0x80000000u;
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

static float flushed(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7F800000u) == 0) u &= 0x80000000u;
  memcpy(&x, &u, sizeof x);
  return x;
}

static void emulated_dpbf16ps(int ct, int at, int bt) {
  EmulatedTile *c = &emulated[ct], *a = &emulated[at], *b = &emulated[bt];
  for (int m = 0; m < c->rows; m++) {
    float sums[16][2] = {{0}};
    for (int k = 0; k < a->colsb / 4; k++)
      for (int n = 0; n < c->colsb / 4; n++)
        for (int odd = 0; odd < 2; odd++)
          sums[n][odd] = flushed(sums[n][odd] + emulated_bf16(a->data[m] + 4 * k + 2 * odd) * emulated_bf16(b->data[k] + 4 * n + 2 * odd));
    for (int n = 0; n < c->colsb / 4; n++) {
      float acc;
      memcpy(&acc, c->data[m] + 4 * n, sizeof acc);
      acc = flushed(acc + flushed(sums[n][0] + sums[n][1]));
      memcpy(c->data[m] + 4 * n, &acc, sizeof acc);
    }
  }
}

#define TILE_CONFIG(cfg) emulated_config(cfg)
#define TILE_LOAD(t, p, stride) emulated_load(t, p, stride)
#define TILE_STORE(t, p, stride) emulated_store(t, p, stride)
#define TILE_ZERO(t) memset(emulated[t].data, 0, sizeof emulated[t].data)
#define TILE_DP(c, a, b) emulated_dpbf16ps(c, a, b)

static int amx_ready(void) { return 1; }
