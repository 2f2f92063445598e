/** Figures cropped to what they draw: vega pads its charts, and a paper wants no empty margin around a figure. */

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

const rootTag = (svg: string) => /<svg\b[^>]*>/.exec(svg);
const attr = (tag: string, name: string) => new RegExp(`\\s${name}="([^"]*)"`).exec(tag)?.[1];

/** The root element's size and viewBox (a viewBox of its size when it has none). */
export function svgSize(svg: string): { width: number; height: number; viewBox: Box } {
  const tag = rootTag(svg)?.[0] ?? '';
  const width = Number(attr(tag, 'width')),
    height = Number(attr(tag, 'height'));
  if (!(width > 0 && height > 0)) throw new Error('the figure SVG has no width and height on its root');
  const vb = attr(tag, 'viewBox')
    ?.trim()
    .split(/[\s,]+/)
    .map(Number);
  const viewBox =
    vb?.length === 4 && vb.every(Number.isFinite)
      ? { x: vb[0], y: vb[1], width: vb[2], height: vb[3] }
      : { x: 0, y: 0, width, height };
  return { width, height, viewBox };
}

/**
 * The box, in the image's pixels, of every pixel that differs from the background (the top-left pixel's colour)
 * in RGBA `pixels` of the given size; undefined when nothing is drawn.
 */
export function contentBox(pixels: Uint8Array, width: number, height: number): Box | undefined {
  const bg = pixels.subarray(0, 4);
  const differs = (i: number) =>
    Math.abs(pixels[i] - bg[0]) > 8 ||
    Math.abs(pixels[i + 1] - bg[1]) > 8 ||
    Math.abs(pixels[i + 2] - bg[2]) > 8 ||
    Math.abs(pixels[i + 3] - bg[3]) > 8;
  let x0 = width,
    y0 = height,
    x1 = -1,
    y1 = -1;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      if (differs((y * width + x) * 4)) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        y1 = y;
      }
  return x1 < 0 ? undefined : { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
}

/** The box grown by `by` pixels on every side, within an image of the given size. */
export function padBox(box: Box, by: number, width: number, height: number): Box {
  const x = Math.max(0, box.x - by),
    y = Math.max(0, box.y - by);
  return {
    x,
    y,
    width: Math.min(width, box.x + box.width + by) - x,
    height: Math.min(height, box.y + box.height + by) - y,
  };
}

/**
 * The SVG with its root narrowed to `box` (in pixels of a rendering at `zoom` times its size): viewBox, width and
 * height, so the SVG, its PNG and its PDF all show the content and nothing around it.
 */
export function cropSvg(svg: string, box: Box, zoom: number): string {
  const tag = rootTag(svg);
  if (!tag) return svg;
  const { width, height, viewBox } = svgSize(svg);
  const sx = viewBox.width / width,
    sy = viewBox.height / height;
  const round = (v: number) => Number(v.toFixed(3));
  const w = box.width / zoom,
    h = box.height / zoom;
  const cropped = tag[0]
    .replace(/\s(width|height|viewBox)="[^"]*"/g, '')
    .replace(
      /^<svg\b/,
      `<svg width="${round(w)}" height="${round(h)}" viewBox="${[
        viewBox.x + (box.x / zoom) * sx,
        viewBox.y + (box.y / zoom) * sy,
        w * sx,
        h * sy,
      ]
        .map(round)
        .join(' ')}"`,
    );
  return svg.slice(0, tag.index) + cropped + svg.slice(tag.index + tag[0].length);
}
