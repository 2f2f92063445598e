import type { ReportTable, RunRecord } from './report.js';

/**
 * A self-contained HTML report: the data is embedded as JSON and drawn as SVG by a small inline script
 * (no network, no libraries). When every plot is drawn the script sets <body data-rendered="N">, which
 * the headless-browser test reads.
 */
export function reportHtml(runs: RunRecord[], table: ReportTable, overlap: { tasks: string[]; matrix: number[][] } | undefined): string {
  const data = {
    table,
    runs: runs.map((r) => ({ name: `${r.task} ${r.strategy}${r.reserve_p !== null && r.strategy !== 'vanilla' ? ` p=${r.reserve_p}` : ''} seed ${r.seed}`, curve: r.curve, mask: r.mask })),
    overlap: overlap ?? null,
  };
  const json = JSON.stringify(data).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>childtune report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg { background: #fafafa; border: 1px solid #ddd; }
</style>
</head>
<body>
<h1>childtune report</h1>
<p>${runs.length} runs. Scores ×100: mean ± standard deviation over seeds (max over seeds, n seeds).</p>
<div id="table"></div>
<h2>Training loss</h2><div class="plots" id="loss"></div>
<h2>Evaluation metric per epoch</h2><div class="plots" id="eval"></div>
<h2>Child network: kept fraction per layer</h2><div class="plots" id="layers"></div>
<h2>Fisher information (log10) and the selection threshold</h2><div class="plots" id="fisher"></div>
<h2>Overlap of the child networks of different tasks (Jaccard)</h2><div class="plots" id="overlap"></div>
<script type="application/json" id="data">${json}</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById('data').textContent);
  var NS = 'http://www.w3.org/2000/svg';
  var colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  var drawn = 0;
  function el(name, attrs, parent) { var e = document.createElementNS(NS, name); for (var k in attrs) e.setAttribute(k, attrs[k]); if (parent) parent.appendChild(e); return e; }
  function figure(where, title) {
    var f = document.createElement('figure'); var c = document.createElement('figcaption'); c.textContent = title; f.appendChild(c);
    var svg = el('svg', { width: 420, height: 260, viewBox: '0 0 420 260', 'class': 'plot' }); f.appendChild(svg);
    document.getElementById(where).appendChild(f); drawn++; return svg;
  }
  function none(where, text) { var p = document.createElement('p'); p.textContent = text; document.getElementById(where).appendChild(p); }
  function axes(svg, xs, ys) {
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs), y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x1 === x0) x1 = x0 + 1; if (y1 === y0) y1 = y0 + 1;
    el('line', { x1: 40, y1: 230, x2: 410, y2: 230, stroke: '#333' }, svg); el('line', { x1: 40, y1: 10, x2: 40, y2: 230, stroke: '#333' }, svg);
    el('text', { x: 2, y: 20, 'font-size': 10 }, svg).textContent = y1.toPrecision(3);
    el('text', { x: 2, y: 230, 'font-size': 10 }, svg).textContent = y0.toPrecision(3);
    el('text', { x: 40, y: 245, 'font-size': 10 }, svg).textContent = String(x0);
    el('text', { x: 380, y: 245, 'font-size': 10 }, svg).textContent = String(x1);
    return function (x, y) { return [40 + (370 * (x - x0)) / (x1 - x0), 230 - (220 * (y - y0)) / (y1 - y0)]; };
  }
  function lines(where, title, series) {
    series = series.filter(function (s) { return s.points.length; });
    if (!series.length) return none(where, 'no data');
    var svg = figure(where, title);
    var xs = [], ys = [];
    series.forEach(function (s) { s.points.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); }); });
    var at = axes(svg, xs, ys);
    series.forEach(function (s, i) {
      el('polyline', { points: s.points.map(function (p) { return at(p[0], p[1]).join(','); }).join(' '), fill: 'none', stroke: colors[i % colors.length], 'stroke-width': 1.5, 'class': 'series' }, svg);
      el('text', { x: 50, y: 20 + 12 * i, 'font-size': 10, fill: colors[i % colors.length] }, svg).textContent = s.name;
    });
  }
  function bars(where, title, labels, values, marker) {
    var svg = figure(where, title);
    var max = Math.max.apply(null, values.concat([1e-12]));
    var w = 370 / Math.max(1, values.length);
    values.forEach(function (v, i) {
      var h = (220 * v) / max;
      el('rect', { x: 40 + i * w + 1, y: 230 - h, width: Math.max(1, w - 2), height: h, fill: colors[0], 'class': 'bar' }, svg);
      if (labels.length <= 16) el('text', { x: 40 + i * w + 2, y: 242, 'font-size': 8 }, svg).textContent = labels[i];
    });
    el('text', { x: 2, y: 20, 'font-size': 10 }, svg).textContent = max.toPrecision(3);
    if (marker) { el('line', { x1: marker.x, y1: 10, x2: marker.x, y2: 230, stroke: '#d62728', 'stroke-dasharray': '4 2', 'class': 'threshold' }, svg); el('text', { x: marker.x + 3, y: 20, 'font-size': 10, fill: '#d62728' }, svg).textContent = marker.label; }
  }
  function table() {
    var t = data.table, h = '<table><tr><th>strategy</th>';
    t.columns.forEach(function (c) { h += '<th>' + esc(c) + '</th>'; });
    h += '</tr>';
    t.rows.forEach(function (r) {
      h += '<tr><td>' + esc(r.strategy) + '</td>';
      t.columns.forEach(function (c) { var x = r.cells[c]; h += '<td>' + (x ? (100 * x.mean).toFixed(2) + ' ± ' + (100 * x.std).toFixed(2) + ' (' + (100 * x.max).toFixed(2) + ', n=' + x.n + ')' : '–') + '</td>'; });
      h += '</tr>';
    });
    document.getElementById('table').innerHTML = h + '</table>';
  }
  function esc(s) { return String(s).replace(/[&<>"]/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]; }); }

  table();
  lines('loss', 'training loss per logged step', data.runs.map(function (r) { return { name: r.name, points: r.curve.filter(function (e) { return e.loss !== undefined; }).map(function (e) { return [e.step, e.loss]; }) }; }));
  lines('eval', 'evaluation metric after each epoch', data.runs.map(function (r) { return { name: r.name, points: r.curve.filter(function (e) { return e.metrics; }).map(function (e) { var k = Object.keys(e.metrics)[0]; return [e.step, e.metrics[k]]; }) }; }));
  var masked = data.runs.filter(function (r) { return r.mask && r.mask.per_layer && Object.keys(r.mask.per_layer).length; });
  if (!masked.length) none('layers', 'no mask statistics');
  masked.slice(0, 8).forEach(function (r) { var keys = Object.keys(r.mask.per_layer); bars('layers', r.name, keys.map(function (k) { return k.replace('layer.', 'L'); }), keys.map(function (k) { return r.mask.per_layer[k]; })); });
  var fisher = data.runs.filter(function (r) { return r.mask && r.mask.fisher; });
  if (!fisher.length) none('fisher', 'no Child-Tuning-D runs');
  fisher.slice(0, 4).forEach(function (r) {
    var hst = r.mask.fisher.histogram, edges = hst.log10_edges, t = Math.log10(r.mask.fisher.threshold);
    var pos = 40 + (370 * (t - edges[0])) / Math.max(1e-9, edges[edges.length - 1] - edges[0]);
    bars('fisher', r.name + ' (zeros: ' + hst.zeros + ')', [], hst.counts, { x: Math.max(40, Math.min(410, pos)), label: 'threshold 10^' + t.toFixed(2) });
  });
  if (!data.overlap) none('overlap', 'needs Child-Tuning-D runs on at least two tasks');
  else {
    var o = data.overlap, svg = figure('overlap', 'Jaccard overlap of child networks'), n = o.tasks.length, s = 200 / n;
    o.matrix.forEach(function (row, i) { row.forEach(function (v, j) {
      el('rect', { x: 120 + j * s, y: 20 + i * s, width: s - 1, height: s - 1, fill: 'rgba(31,119,180,' + (isNaN(v) ? 0 : v) + ')', 'class': 'cell' }, svg);
      el('text', { x: 120 + j * s + s / 2 - 10, y: 20 + i * s + s / 2, 'font-size': 10 }, svg).textContent = isNaN(v) ? 'n/a' : v.toFixed(2);
    }); el('text', { x: 5, y: 20 + i * s + s / 2, 'font-size': 10 }, svg).textContent = o.tasks[i]; });
  }
  document.body.setAttribute('data-rendered', String(drawn));
})();
</script>
</body>
</html>
`;
}
