import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuKey, withCpuSummary } from '../bench/markdown.js';
import { higherPeak, type Peak } from '../bench/peak.js';

// AMD's family 25 is Zen 3 (AVX2) and Zen 4 (AVX-512); these VMs name both "AMD EPYC".
const zen3 = { model: 'AMD EPYC', vendor: 'AuthenticAMD', family: 25, model_number: 1, flags: ['avx2', 'fma'] };
const zen4Recorded = { model: 'AMD EPYC', vendor: 'AuthenticAMD', family: 25, flags: ['avx2', 'fma', 'avx512f'] };
const zen5Recorded = { ...zen4Recorded, family: 26 };
const summary = (date: string) => ({ date, peak_gflops: 1, rows: [] });

test("a CPU's table is keyed by family and model number", () => {
  assert.equal(cpuKey(zen3), 'AMD EPYC (family 25, model 1)');
  assert.equal(cpuKey(zen4Recorded), 'AMD EPYC (family 25)');
  assert.equal(cpuKey({ model: 'x', family: null, flags: [] }), 'x');
});

test('a Zen 3 run keeps the Zen 4 table of the same family that was recorded without a model number', () => {
  const before = {
    [cpuKey(zen4Recorded)]: { ...summary('2026-11-30'), cpu: zen4Recorded },
    [cpuKey(zen5Recorded)]: { ...summary('2026-12-07'), cpu: zen5Recorded },
  };
  const after = withCpuSummary(before, zen3, summary('2026-12-08'));
  assert.deepEqual(Object.keys(after).sort(), [
    'AMD EPYC (family 25)',
    'AMD EPYC (family 25, model 1)',
    'AMD EPYC (family 26)',
  ]);
  assert.equal(after['AMD EPYC (family 25)'].date, '2026-11-30');
  assert.deepEqual(after['AMD EPYC (family 25, model 1)'].cpu, zen3);
});

test('a run replaces its own earlier table, and one recorded before the key had the model number', () => {
  const zen5 = { ...zen5Recorded, model_number: 2 };
  const before = {
    [cpuKey(zen5Recorded)]: { ...summary('2026-12-07'), cpu: zen5Recorded },
    [cpuKey(zen4Recorded)]: { ...summary('2026-11-30'), cpu: zen4Recorded },
  };
  const once = withCpuSummary(before, zen5, summary('2026-12-08'));
  assert.deepEqual(Object.keys(once).sort(), ['AMD EPYC (family 25)', 'AMD EPYC (family 26, model 2)']);
  const twice = withCpuSummary(once, zen5, summary('2026-12-09'));
  assert.equal(Object.keys(twice).length, 2);
  assert.equal(twice['AMD EPYC (family 26, model 2)'].date, '2026-12-09');
});

test("the run's peak is the higher of its two measurements, per kernel and figure", () => {
  const measured = (one: number[], all: number[], bf16: number | null): Peak => ({
    cpu: zen3,
    cores: 2,
    kernels: { avx2: { one_core: one[0], all_cores: all[0] }, 'avx2-fma': { one_core: one[1], all_cores: all[1] } },
    gflops: Math.max(...all),
    bf16_gflops: bf16,
    how: 'measured',
  });
  // The second core slow at the start, the first at the end: each figure takes its better measurement.
  const peak = higherPeak(measured([86, 99.5], [128.8, 163.4], null), measured([75.4, 93.1], [151.6, 190.3], null));
  assert.deepEqual(peak.kernels, {
    avx2: { one_core: 86, all_cores: 151.6 },
    'avx2-fma': { one_core: 99.5, all_cores: 190.3 },
  });
  assert.equal(peak.gflops, 190.3);
  assert.equal(peak.bf16_gflops, null);
  assert.match(peak.how, /the higher of two measurements/);
  assert.equal(higherPeak(measured([1, 2], [3, 4], 9), measured([1, 2], [3, 4], 12)).bf16_gflops, 12);
});
