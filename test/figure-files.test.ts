import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { test } from 'node:test';
import { Resvg } from '@resvg/resvg-js';
import { contentBox, svgSize } from '../src/run/report/crop.js';
import { svgToPdf } from '../src/run/report/pdf.js';
import { CROP_PAD, figureRenderer, PNG_ZOOM, renderSvg } from '../src/run/report/render.js';

/** A small chart as the report draws them: vega pads it, and its axis title holds an arrow and a ±. */
const chart = () =>
  renderSvg({
    data: { values: [1, 2, 3].map((x) => ({ x, y: x * x })) },
    mark: 'line',
    encoding: {
      x: { field: 'x', type: 'quantitative' },
      y: { field: 'y', type: 'quantitative', title: 'glue/rte → snli (± std)' },
    },
  });

test('a figure is cropped to its content: the PNG has no empty margin beyond the pad', async () => {
  const renderer = await figureRenderer();
  assert.ok('crop' in renderer, 'resvg renders on this platform');
  const drawn = await chart();
  const svg = renderer.crop(drawn);
  const [before, after] = [svgSize(drawn), svgSize(svg)];
  assert.ok(after.width < before.width && after.height < before.height, 'the padding is cut away');
  const png = renderer.png(svg);
  // The PNG's own size (IHDR), then its pixels read back: content reaches within the pad of every edge.
  assert.deepEqual(
    [png.readUInt32BE(16), png.readUInt32BE(20)],
    [after.width * PNG_ZOOM, after.height * PNG_ZOOM].map(Math.round),
  );
  const image = new Resvg(svg, { fitTo: { mode: 'zoom', value: PNG_ZOOM }, font: { loadSystemFonts: true } }).render();
  const box = contentBox(image.pixels, image.width, image.height)!;
  const pad = CROP_PAD * PNG_ZOOM + 1;
  assert.ok(box.x <= pad && box.y <= pad, `content starts at ${box.x},${box.y}`);
  assert.ok(image.width - (box.x + box.width) <= pad, `right margin ${image.width - (box.x + box.width)}`);
  assert.ok(image.height - (box.y + box.height) <= pad, `bottom margin ${image.height - (box.y + box.height)}`);
});

test('a figure PDF is a one-page vector PDF of the figure size: paths and text, no image', async () => {
  const renderer = await figureRenderer();
  const svg = 'crop' in renderer ? renderer.crop(await chart()) : await chart();
  const pdf = await svgToPdf(svg);
  const text = pdf.toString('latin1');
  assert.equal(text.slice(0, 5), '%PDF-');
  assert.match(text.slice(-8), /%%EOF\s*$/);
  const xref = Number(/startxref\s+(\d+)\s+%%EOF\s*$/.exec(text)![1]);
  assert.equal(text.slice(xref, xref + 4), 'xref', 'startxref points at the cross-reference table');
  assert.match(text, /\/Type \/Pages\s*\/Count 1\b/);
  const { width, height } = svgSize(svg);
  const media = /\/MediaBox \[([^\]]*)\]/.exec(text)![1].trim().split(/\s+/).map(Number);
  assert.deepEqual(media, [0, 0, width, height]);
  assert.doesNotMatch(text, /\/Subtype \/Image/, 'vector: no embedded raster');
  const streams = [...text.matchAll(/stream\r?\n([\s\S]*?)\r?\nendstream/g)].map((m) => {
    try {
      return zlib.inflateSync(Buffer.from(m[1], 'latin1')).toString('latin1');
    } catch {
      return m[1];
    }
  });
  assert.ok(
    streams.some((s) => /\bT[jJ]\b/.test(s) && /\bl\b/.test(s)),
    'a content stream draws text and lines',
  );
});
