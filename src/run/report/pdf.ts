import fs from 'node:fs';
import PDFDocument from 'pdfkit';
import SVGtoPDF from 'svg-to-pdfkit';
import { svgSize } from './crop.js';

/**
 * A vector PDF of a figure's SVG, one page of its size (1 SVG pixel = 1 pt), for papers: paths stay paths and text
 * stays text. Text is set in DejaVu Sans where the system has it (it holds the arrows and signs of the labels),
 * else in PDF's built-in Helvetica.
 */
export function svgToPdf(svg: string): Promise<Buffer> {
  const { width, height } = svgSize(svg);
  const doc = new PDFDocument({
    size: [width, height],
    margin: 0,
    // A fixed date (pdfkit stamps the clock otherwise, and derives the file ID from it): the same figure, the same bytes.
    info: { Producer: 'childtune', Creator: 'childtune', CreationDate: new Date(0) },
  });
  const fonts = embeddableFonts();
  if (fonts) {
    doc.registerFont('regular', fonts.regular);
    doc.registerFont('bold', fonts.bold);
  }
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (c) => chunks.push(c));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
  SVGtoPDF(doc, svg, 0, 0, {
    assumePt: true,
    width,
    height,
    ...(fonts && { fontCallback: (_family: string, bold: boolean) => (bold ? 'bold' : 'regular') }),
    warningCallback: () => {}, // unsupported SVG attributes vega never relies on (aria-*, pointer hints)
  });
  doc.end();
  return done;
}

const DEJAVU = [
  '/usr/share/fonts/truetype/dejavu',
  '/usr/share/fonts/TTF',
  '/usr/share/fonts/dejavu',
  '/Library/Fonts',
];

function embeddableFonts(): { regular: string; bold: string } | undefined {
  for (const dir of DEJAVU) {
    const regular = `${dir}/DejaVuSans.ttf`,
      bold = `${dir}/DejaVuSans-Bold.ttf`;
    if (fs.existsSync(regular)) return { regular, bold: fs.existsSync(bold) ? bold : regular };
  }
  return undefined;
}
