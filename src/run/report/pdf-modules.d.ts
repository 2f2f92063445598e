// The parts of pdfkit and svg-to-pdfkit that figures use (neither package ships type declarations).
declare module 'pdfkit' {
  interface PdfOptions {
    size: [number, number];
    margin: number;
    info?: Record<string, string | Date>;
  }
  class PDFDocument {
    constructor(options: PdfOptions);
    registerFont(name: string, file: string): this;
    on(event: 'data', listener: (chunk: Buffer) => void): this;
    on(event: 'end' | 'error', listener: (e?: Error) => void): this;
    end(): void;
  }
  export default PDFDocument;
}

declare module 'svg-to-pdfkit' {
  import type PDFDocument from 'pdfkit';
  interface SvgOptions {
    assumePt?: boolean;
    width?: number;
    height?: number;
    fontCallback?: (family: string, bold: boolean, italic: boolean) => string;
    warningCallback?: (message: string) => void;
  }
  export default function SVGtoPDF(doc: PDFDocument, svg: string, x: number, y: number, options?: SvgOptions): void;
}
