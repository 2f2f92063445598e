import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuKey, withCpuSummary } from '../bench/markdown.js';

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
