import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

/** Vega-Lite compiled to Vega and rendered to SVG in Node (no browser, no canvas). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * A PNG of an SVG at twice its size (for slides and print), through resvg's prebuilt binary. Where that
 * binary does not exist for the platform, the reason is returned instead and the report goes on without PNGs.
 */
export async function pngRenderer(): Promise<{ render: (svg: string) => Buffer } | { unavailable: string }> {
  try {
    const { Resvg } = await import('@resvg/resvg-js');
    return {
      render: (svg) =>
        new Resvg(svg, {
          fitTo: { mode: 'zoom', value: 2 },
          font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
        })
          .render()
          .asPng(),
    };
  } catch (e) {
    return {
      unavailable: `no PNG renderer on this platform (@resvg/resvg-js: ${(e as Error).message.split('\n')[0]})`,
    };
  }
}
