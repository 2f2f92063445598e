import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { contentBox, cropSvg, padBox } from './crop.js';

/** Vega-Lite compiled to Vega and rendered to SVG in Node (no browser, no canvas). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** PNGs render at twice the figure's size (for slides and print). */
export const PNG_ZOOM = 2;
/** What a cropped figure keeps around its content, in SVG pixels: enough that no glyph touches the edge. */
export const CROP_PAD = 2;

export interface FigureRenderer {
  /** The figure cropped to its content: the SVG's viewBox narrowed to what it draws. */
  crop: (svg: string) => string;
  png: (svg: string) => Buffer;
}

/**
 * Cropping and PNGs through resvg's prebuilt binary. Where that binary does not exist for the platform, the reason
 * is returned instead and the report goes on with uncropped SVGs (and PDFs) and no PNGs.
 */
export async function figureRenderer(): Promise<FigureRenderer | { unavailable: string }> {
  try {
    const { Resvg } = await import('@resvg/resvg-js');
    const render = (svg: string) =>
      new Resvg(svg, {
        fitTo: { mode: 'zoom', value: PNG_ZOOM },
        font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
      }).render();
    return {
      crop(svg) {
        const image = render(svg);
        const box = contentBox(image.pixels, image.width, image.height);
        return box ? cropSvg(svg, padBox(box, CROP_PAD * PNG_ZOOM, image.width, image.height), PNG_ZOOM) : svg;
      },
      png: (svg) => render(svg).asPng(),
    };
  } catch (e) {
    return {
      unavailable: `no PNG renderer on this platform (@resvg/resvg-js: ${(e as Error).message.split('\n')[0]})`,
    };
  }
}
