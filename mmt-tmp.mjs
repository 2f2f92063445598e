import * as tf from '@tensorflow/tfjs-core';
const D = process.env.DIST;
const { selectBackend } = await import(D + '/src/engine/backend.js');
const { matMul } = await import(D + '/src/engine/kernels.js'); const { selectKernel } = await import(D + '/src/engine/native.js');
await selectBackend('wasm'); selectKernel(process.env.K ?? 'avx512f');
const out = [];
for (const [M,K,N] of [[768,1024,768],[768,1024,3072],[3072,1024,768]]) {
  const a = tf.randomUniform([K,M]), b = tf.randomUniform([K,N]); const t=[];
  for (let r=0;r<12;r++){ const t0=performance.now(); const c=matMul(a,b,true,false); t.push(performance.now()-t0); c.dispose(); }
  t.sort((x,y)=>x-y); out.push(`${M}x${K}x${N}T ${(2*M*K*N/t[6]/1e6).toFixed(0)}`); tf.dispose([a,b]);
}
console.log(process.env.TAG, out.join('  '));
