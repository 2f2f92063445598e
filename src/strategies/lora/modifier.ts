import { LowRankUpdate } from '../../engine/modules/low-rank.js';
import { defineModifier } from '../../engine/modules/modifier.js';
import type { DenseRole } from '../../engine/modules/families.js';
import type { OptionsOf } from '../definition.js';
import { inHead, type Head } from '../head.js';

/** The projections LoRA may target, by the Hugging Face module name suffix PEFT matches (target_modules). */
export const TARGETS = {
  query: 'query',
  key: 'key',
  value: 'value',
  'attention.output.dense': 'attention-output',
  'intermediate.dense': 'intermediate',
  'output.dense': 'output',
} as const satisfies Record<string, DenseRole>;
export type Target = keyof typeof TARGETS;

export interface LoraModifierOptions {
  r: number;
  alpha: number;
  dropout: number;
  targets: Target[];
  head: Head;
}

/** The modifier's options from the recipe's. */
export const loraSettings = (o: OptionsOf<'lora'>): LoraModifierOptions => ({
  r: o.r,
  alpha: o.alpha,
  dropout: o.dropout,
  targets: o.target_modules as Target[],
  head: o.head ?? 'classifier',
});

/** A [r, in] and B [out, r] beside a projection, named as PEFT names them after the module (lora_A, lora_B). */
export const loraNames = (site: string) => ({ a: `${site}.lora_A.weight`, b: `${site}.lora_B.weight` });

/**
 * LoRA on the model: every pretrained weight frozen but the head's (`head`), and each targeted projection wrapped in a
 * low-rank update. A is drawn as PEFT draws it (kaiming-uniform with a = sqrt(5): uniform within 1/sqrt(in)), B is
 * zero, so the model starts as the pretrained one, bit for bit. A and B decay as the head's weights do (2-D).
 */
export const loraModifier = defineModifier<LoraModifierOptions>('lora', (editor, o) => {
  const roles = new Set<DenseRole>(o.targets.map((t) => TARGETS[t]));
  editor.setTrainable(inHead(o.head));
  editor.wrapDense(
    (site) => site.layer !== undefined && roles.has(site.role),
    (inner, site) => {
      const names = loraNames(site.name);
      const a = editor.addParam({
        name: names.a,
        shape: [o.r, site.inDim],
        transposed: true,
        decay: true,
        init: { uniform: 1 / Math.sqrt(site.inDim) },
        layer: site.layer,
      });
      const b = editor.addParam({
        name: names.b,
        shape: [site.outDim, o.r],
        transposed: true,
        decay: true,
        init: 'zeros',
        layer: site.layer,
      });
      return new LowRankUpdate(inner, a, b, o.alpha / o.r, o.dropout);
    },
  );
});
