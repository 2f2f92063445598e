import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

/** The Chromium the report tests drive (Debian's package; CI installs it). */
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((b) =>
  fs.existsSync(b),
);

/** What a reader's browser shows, measured in the page. */
export interface PageLayout {
  scrollWidth: number;
  viewportWidth: number;
  /** Figures whose plot area something else covers: what, and which figure. */
  overlaps: string[];
  /** Text inside a figure that reaches outside the figure (cut off). */
  clipped: string[];
  /** Legend labels of each summary figure, by figure id. */
  legends: Record<string, string[]>;
  /** Whether the per-run view is closed by default. */
  perRunOpen: boolean;
  perRunFigures: number;
}

/** Opens an HTML file at the given width in headless Chromium, screenshots it, and measures its layout. */
export async function inspectPage(html: string, width: number, screenshot: string): Promise<PageLayout> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'childtune-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: profile,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width, height: 900 });
    await page.goto(`file://${html}`, { waitUntil: 'load' });
    await page.screenshot({ path: screenshot as `${string}.png`, fullPage: true });
    return await page.evaluate(() => {
      const intersects = (a: DOMRect, b: DOMRect, slack = 1) =>
        a.left + slack < b.right && b.left + slack < a.right && a.top + slack < b.bottom && b.top + slack < a.bottom;
      const describe = (e: Element) =>
        `${e.tagName.toLowerCase()}${e.getAttribute('class') ? `.${e.getAttribute('class')!.split(' ').join('.')}` : ''} "${(e.textContent ?? '').trim().slice(0, 40)}"`;
      const overlaps: string[] = [],
        clipped: string[] = [],
        legends: Record<string, string[]> = {};
      const visible = (e: Element) => {
        const r = e.getBoundingClientRect();
        return r.width > 0 && r.height > 0;
      };
      const pageBlocks = [
        ...document.querySelectorAll('h1, h2, p, table, figcaption, summary, .warnings, figure > svg'),
      ].filter(visible);
      for (const figure of [...document.querySelectorAll('figure')].filter(visible)) {
        const svg = figure.querySelector('svg')!;
        const plot = svg.querySelector('.role-frame.root > g > path.background');
        if (!plot) {
          overlaps.push(`${figure.id}: no plot area found`);
          continue;
        }
        const area = plot.getBoundingClientRect();
        // Within the figure: legends, titles and axis titles stay off the plot area.
        for (const e of svg.querySelectorAll('.role-legend, .role-title, .role-axis-title')) {
          if (intersects(e.getBoundingClientRect(), area))
            overlaps.push(`${figure.id}: ${describe(e)} covers the plot area`);
        }
        // On the page: nothing else reaches into it.
        for (const b of pageBlocks)
          if (b !== svg && intersects(b.getBoundingClientRect(), area))
            overlaps.push(`${figure.id}: ${describe(b)} covers the plot area`);
        const box = svg.getBoundingClientRect();
        for (const t of svg.querySelectorAll('text')) {
          const r = t.getBoundingClientRect();
          if (
            r.width &&
            (r.left < box.left - 0.5 ||
              r.right > box.right + 0.5 ||
              r.top < box.top - 0.5 ||
              r.bottom > box.bottom + 0.5)
          )
            clipped.push(`${figure.id}: "${t.textContent}"`);
        }
        if (!figure.closest('details'))
          legends[figure.id.replace(/^fig-/, '')] = [...svg.querySelectorAll('.role-legend-label text')].map(
            (t) => t.textContent ?? '',
          );
      }
      const details = document.querySelector('details#per-run') as HTMLDetailsElement | null;
      return {
        scrollWidth: document.documentElement.scrollWidth,
        viewportWidth: window.innerWidth,
        overlaps,
        clipped,
        legends,
        perRunOpen: !!details?.open,
        perRunFigures: details ? details.querySelectorAll('figure svg').length : 0,
      };
    });
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}
