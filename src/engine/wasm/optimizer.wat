;; The optimizer's per-element passes over the shared parameter state (weights, reduced gradient, Adam
;; moments), which live in one shared memory that every data-parallel thread imports. Each pass does its
;; arithmetic in doubles and rounds to float where JavaScript stores to a Float32Array, so the results are
;; bit-identical to the plain JavaScript passes (src/engine/optimizer.ts), two elements per f64x2 vector.
;; Everything is written inline: V8 does not inline wasm calls, and a call per load cost 3x in the AdamW pass.
;; Pointers are byte offsets; counts are elements.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; g[0, n) *= coef (gradient clipping).
  (func (export "scale") (param $g i32) (param $n i32) (param $coef f64)
    (local $end i32) (local $c v128)
    (local.set $c (f64x2.splat (local.get $coef)))
    (local.set $end (i32.add (local.get $g) (i32.shl (i32.and (local.get $n) (i32.const -2)) (i32.const 2))))
    (block $done (loop $pairs (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
      (v128.store64_lane 0 (local.get $g) (f32x4.demote_f64x2_zero (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $g))) (local.get $c))))
      (local.set $g (i32.add (local.get $g) (i32.const 8)))
      (br $pairs)))
    (if (i32.and (local.get $n) (i32.const 1))
      (then (f32.store (local.get $g) (f32.demote_f64 (f64.mul (f64.promote_f32 (f32.load (local.get $g))) (local.get $coef)))))))

  ;; AdamW over n elements (see adamwRange): m = b1 m + c1 g, v = b2 v + (c2 g) g,
  ;; p' = float(p - stepSize m / (sqrt v + eps)), p = p' - decay p'.
  (func (export "adamw") (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
      (param $stepSize f64) (param $b1 f64) (param $c1 f64) (param $b2 f64) (param $c2 f64) (param $eps f64) (param $decay f64)
    (local $i i32) (local $pairs i32) (local $gj v128) (local $mj v128) (local $vj v128) (local $pj v128)
    (local $gs f64) (local $ms f64) (local $vs f64) (local $ps f64)
    (local.set $pairs (i32.shr_u (local.get $n) (i32.const 1)))
    (block $done (loop $each (br_if $done (i32.ge_u (local.get $i) (local.get $pairs)))
      (local.set $gj (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $g))))
      (local.set $mj (f64x2.add (f64x2.mul (f64x2.splat (local.get $b1)) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $m)))) (f64x2.mul (f64x2.splat (local.get $c1)) (local.get $gj))))
      (local.set $vj (f64x2.add (f64x2.mul (f64x2.splat (local.get $b2)) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $v))))
        (f64x2.mul (f64x2.mul (f64x2.splat (local.get $c2)) (local.get $gj)) (local.get $gj))))
      (v128.store64_lane 0 (local.get $m) (f32x4.demote_f64x2_zero (local.get $mj)))
      (v128.store64_lane 0 (local.get $v) (f32x4.demote_f64x2_zero (local.get $vj)))
      (local.set $pj (f64x2.promote_low_f32x4 (f32x4.demote_f64x2_zero
        (f64x2.sub (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $p)))
          (f64x2.div (f64x2.mul (f64x2.splat (local.get $stepSize)) (local.get $mj)) (f64x2.add (f64x2.sqrt (local.get $vj)) (f64x2.splat (local.get $eps))))))))
      (v128.store64_lane 0 (local.get $p) (f32x4.demote_f64x2_zero (f64x2.sub (local.get $pj) (f64x2.mul (f64x2.splat (local.get $decay)) (local.get $pj)))))
      (local.set $p (i32.add (local.get $p) (i32.const 8)))
      (local.set $g (i32.add (local.get $g) (i32.const 8)))
      (local.set $m (i32.add (local.get $m) (i32.const 8)))
      (local.set $v (i32.add (local.get $v) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $each)))
    (if (i32.and (local.get $n) (i32.const 1))
      (then
        (local.set $gs (f64.promote_f32 (f32.load (local.get $g))))
        (local.set $ms (f64.add (f64.mul (local.get $b1) (f64.promote_f32 (f32.load (local.get $m)))) (f64.mul (local.get $c1) (local.get $gs))))
        (local.set $vs (f64.add (f64.mul (local.get $b2) (f64.promote_f32 (f32.load (local.get $v)))) (f64.mul (f64.mul (local.get $c2) (local.get $gs)) (local.get $gs))))
        (f32.store (local.get $m) (f32.demote_f64 (local.get $ms)))
        (f32.store (local.get $v) (f32.demote_f64 (local.get $vs)))
        (local.set $ps (f64.promote_f32 (f32.demote_f64
          (f64.sub (f64.promote_f32 (f32.load (local.get $p))) (f64.div (f64.mul (local.get $stepSize) (local.get $ms)) (f64.add (f64.sqrt (local.get $vs)) (local.get $eps)))))))
        (f32.store (local.get $p) (f32.demote_f64 (f64.sub (local.get $ps) (f64.mul (local.get $decay) (local.get $ps))))))))

  ;; Child-Tuning-F's draw over one chunk of n elements (see Rng.bernoulliBits): xoshiro128** from state
  ;; (s0, s1, s2, s3) writes (n + 1) / 2 32-bit draws at `draws`; element j reads 16-bit half j and is kept when it
  ;; is below `threshold`. The decisions go to the bitset at `bits` (bit j of the chunk is bit j & 7 of byte j >> 3;
  ;; the last byte's bits past n are zero), eight per byte from one vector compare.
  (func (export "fdraw") (param $bits i32) (param $n i32) (param $s0 i32) (param $s1 i32) (param $s2 i32) (param $s3 i32)
      (param $threshold i32) (param $draws i32)
    (local $at i32) (local $end i32) (local $t i32) (local $below v128) (local $byte i32) (local $i i32)
    (local.set $at (local.get $draws))
    (local.set $end (i32.add (local.get $draws) (i32.shl (i32.shr_u (i32.add (local.get $n) (i32.const 1)) (i32.const 1)) (i32.const 2))))
    (block $drawn (loop $draw (br_if $drawn (i32.ge_u (local.get $at) (local.get $end)))
      (i32.store (local.get $at) (i32.mul (i32.rotl (i32.mul (local.get $s1) (i32.const 5)) (i32.const 7)) (i32.const 9)))
      (local.set $t (i32.shl (local.get $s1) (i32.const 9)))
      (local.set $s2 (i32.xor (local.get $s2) (local.get $s0)))
      (local.set $s3 (i32.xor (local.get $s3) (local.get $s1)))
      (local.set $s1 (i32.xor (local.get $s1) (local.get $s2)))
      (local.set $s0 (i32.xor (local.get $s0) (local.get $s3)))
      (local.set $s2 (i32.xor (local.get $s2) (local.get $t)))
      (local.set $s3 (i32.rotl (local.get $s3) (i32.const 11)))
      (local.set $at (i32.add (local.get $at) (i32.const 4)))
      (br $draw)))
    ;; u < threshold as u <= threshold - 1, which fits 16 bits (threshold is 1 to 65536).
    (local.set $below (i16x8.splat (i32.sub (local.get $threshold) (i32.const 1))))
    (local.set $at (local.get $draws))
    (local.set $end (i32.add (local.get $bits) (i32.shr_u (local.get $n) (i32.const 3))))
    (block $done (loop $bytes (br_if $done (i32.ge_u (local.get $bits) (local.get $end)))
      (i32.store8 (local.get $bits) (i16x8.bitmask (i16x8.le_u (v128.load (local.get $at)) (local.get $below))))
      (local.set $bits (i32.add (local.get $bits) (i32.const 1)))
      (local.set $at (i32.add (local.get $at) (i32.const 16)))
      (br $bytes)))
    (if (i32.and (local.get $n) (i32.const 7))
      (then
        (block $tail (loop $each (br_if $tail (i32.ge_u (local.get $i) (i32.and (local.get $n) (i32.const 7))))
          (local.set $byte (i32.or (local.get $byte)
            (i32.shl (i32.lt_u (i32.load16_u (i32.add (local.get $at) (i32.shl (local.get $i) (i32.const 1)))) (local.get $threshold)) (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each)))
        (i32.store8 (local.get $bits) (local.get $byte)))))

  ;; Applies a keep bitset to g[0, n) (bit j at bits[j >> 3], bit j & 7): kept elements times `scale`, the rest
  ;; zeroed, as Child-Tuning-F's mask (drawn by fdraw, or replayed). Four elements per step: a nibble of the
  ;; byte becomes four lanes of all ones or zeros, so the factor is scale's bits or +0.0.
  (func (export "fapply") (param $g i32) (param $bits i32) (param $n i32) (param $scale f64)
    (local $i i32) (local $end i32) (local $keep v128) (local $x v128) (local $factor v128) (local $lo v128) (local $hi v128) (local $u i32)
    (local.set $factor (f64x2.splat (local.get $scale)))
    (local.set $end (i32.shr_u (local.get $n) (i32.const 2)))
    (block $done (loop $quads (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $keep (i32x4.ne (v128.and (i32x4.splat (i32.shr_u (i32.load8_u (i32.add (local.get $bits) (i32.shr_u (local.get $i) (i32.const 1))))
          (i32.shl (i32.and (local.get $i) (i32.const 1)) (i32.const 2)))) (v128.const i32x4 1 2 4 8)) (v128.const i32x4 0 0 0 0)))
      (local.set $x (v128.load (local.get $g)))
      (local.set $lo (f32x4.demote_f64x2_zero (f64x2.mul (f64x2.promote_low_f32x4 (local.get $x))
        (v128.and (local.get $factor) (i64x2.extend_low_i32x4_s (local.get $keep))))))
      (local.set $hi (f32x4.demote_f64x2_zero (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x)))
        (v128.and (local.get $factor) (i64x2.extend_high_i32x4_s (local.get $keep))))))
      (v128.store (local.get $g) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $lo) (local.get $hi)))
      (local.set $g (i32.add (local.get $g) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $quads)))
    (local.set $i (i32.shl (local.get $i) (i32.const 2)))
    (block $done (loop $singles (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $u (i32.and (i32.shr_u (i32.load8_u (i32.add (local.get $bits) (i32.shr_u (local.get $i) (i32.const 3)))) (i32.and (local.get $i) (i32.const 7))) (i32.const 1)))
      (f32.store (local.get $g) (f32.demote_f64 (f64.mul (f64.promote_f32 (f32.load (local.get $g))) (select (local.get $scale) (f64.const 0) (local.get $u)))))
      (local.set $g (i32.add (local.get $g) (i32.const 4)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $singles))))

  ;; The data-parallel gradient reduce (see ShardExecutor's reduce round). Sums of squares are accumulated
  ;; one element at a time in order onto the running sum `sum`, as JavaScript does, so the clip norm is
  ;; bit-identical too.

  ;; Two shards: g = w0 g + w1 g1, rounded once; adds the unrounded squares to `sum`.
  (func (export "reduce2") (param $g i32) (param $g1 i32) (param $n i32) (param $w0 f64) (param $w1 f64) (param $sum f64) (result f64)
    (local $end i32) (local $x f64)
    (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n) (i32.const 2))))
    (block $done (loop $each (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
      (local.set $x (f64.add (f64.mul (local.get $w0) (f64.promote_f32 (f32.load (local.get $g)))) (f64.mul (local.get $w1) (f64.promote_f32 (f32.load (local.get $g1))))))
      (f32.store (local.get $g) (f32.demote_f64 (local.get $x)))
      (local.set $sum (f64.add (local.get $sum) (f64.mul (local.get $x) (local.get $x))))
      (local.set $g (i32.add (local.get $g) (i32.const 4)))
      (local.set $g1 (i32.add (local.get $g1) (i32.const 4)))
      (br $each)))
    (local.get $sum))

  ;; g += w gk, rounded (the third and later shards).
  (func (export "axpy") (param $g i32) (param $gk i32) (param $n i32) (param $w f64)
    (local $end i32)
    (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n) (i32.const 2))))
    (block $done (loop $each (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
      (f32.store (local.get $g) (f32.demote_f64 (f64.add (f64.promote_f32 (f32.load (local.get $g))) (f64.mul (local.get $w) (f64.promote_f32 (f32.load (local.get $gk)))))))
      (local.set $g (i32.add (local.get $g) (i32.const 4)))
      (local.set $gk (i32.add (local.get $gk) (i32.const 4)))
      (br $each))))

  ;; x += coef (p - a), rounded: a penalty's gradient towards the pretrained anchor a (x the gradient), or a step
  ;; of the weights towards it (x is p). Each element is read before it is written.
  (func (export "pull") (param $x i32) (param $p i32) (param $a i32) (param $n i32) (param $coef f64)
    (local $end i32)
    (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
    (block $done (loop $each (br_if $done (i32.ge_u (local.get $x) (local.get $end)))
      (f32.store (local.get $x) (f32.demote_f64 (f64.add (f64.promote_f32 (f32.load (local.get $x)))
        (f64.mul (local.get $coef) (f64.sub (f64.promote_f32 (f32.load (local.get $p))) (f64.promote_f32 (f32.load (local.get $a))))))))
      (local.set $x (i32.add (local.get $x) (i32.const 4)))
      (local.set $p (i32.add (local.get $p) (i32.const 4)))
      (local.set $a (i32.add (local.get $a) (i32.const 4)))
      (br $each))))

  ;; p -= decay p, rounded: the decoupled weight decay on its own (after a step changed by a step rule).
  (func (export "decay") (param $p i32) (param $n i32) (param $decay f64)
    (local $end i32) (local $x f64)
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
    (block $done (loop $each (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $x (f64.promote_f32 (f32.load (local.get $p))))
      (f32.store (local.get $p) (f32.demote_f64 (f64.sub (local.get $x) (f64.mul (local.get $decay) (local.get $x)))))
      (local.set $p (i32.add (local.get $p) (i32.const 4)))
      (br $each))))

  ;; `sum` plus the squares of g[0, n).
  (func (export "sumsq") (param $g i32) (param $n i32) (param $sum f64) (result f64)
    (local $end i32) (local $x f64)
    (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n) (i32.const 2))))
    (block $done (loop $each (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
      (local.set $x (f64.promote_f32 (f32.load (local.get $g))))
      (local.set $sum (f64.add (local.get $sum) (f64.mul (local.get $x) (local.get $x))))
      (local.set $g (i32.add (local.get $g) (i32.const 4)))
      (br $each)))
    (local.get $sum))
)
