// Minimal SVG charts for reports: no dependencies, readable in any browser or viewer.

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function barChart(title: string, bars: Array<{ label: string; value: number }>, unit = '', reference?: number): string {
  const W = 760, rowH = 26, left = 190, top = 40;
  const H = top + bars.length * rowH + 30;
  const max = Math.max(...bars.map((b) => b.value), reference ?? 0, 1e-9);
  const x = (v: number) => left + (v / max) * (W - left - 90);
  const rows = bars.map((b, i) => {
    const y = top + i * rowH;
    return `<text x="${left - 8}" y="${y + 17}" text-anchor="end" font-size="13">${esc(b.label)}</text>` +
      `<rect x="${left}" y="${y + 4}" width="${Math.max(1, x(b.value) - left).toFixed(1)}" height="${rowH - 8}" fill="#4a7bd0"/>` +
      `<text x="${(x(b.value) + 6).toFixed(1)}" y="${y + 17}" font-size="12">${b.value.toFixed(2)}${esc(unit)}</text>`;
  });
  const ref = reference !== undefined
    ? `<line x1="${x(reference).toFixed(1)}" y1="${top - 4}" x2="${x(reference).toFixed(1)}" y2="${H - 26}" stroke="#c33" stroke-dasharray="4 3"/>`
    : '';
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">` +
    `<rect width="100%" height="100%" fill="white"/><text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>` +
    rows.join('') + ref + '</svg>\n';
}

export function lineChart(title: string, series: Array<{ label: string; points: Array<[number, number]>; color: string }>, xLabel: string, yLabel: string): string {
  const W = 760, H = 420, L = 70, R = 20, T = 40, B = 50;
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (v: number) => L + ((v - x0) / (x1 - x0 || 1)) * (W - L - R);
  const sy = (v: number) => H - B - ((v - y0) / (y1 - y0 || 1)) * (H - T - B);
  const ticks = Array.from({ length: 6 }, (_, i) => y0 + ((y1 - y0) * i) / 5);
  const grid = ticks.map((v) => `<line x1="${L}" x2="${W - R}" y1="${sy(v).toFixed(1)}" y2="${sy(v).toFixed(1)}" stroke="#ddd"/><text x="${L - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end" font-size="11">${v.toFixed(2)}</text>`);
  const xticks = Array.from({ length: 6 }, (_, i) => x0 + ((x1 - x0) * i) / 5).map((v) => `<text x="${sx(v).toFixed(1)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${Math.round(v)}</text>`);
  const lines = series.map((s) => `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' ')}"/>`);
  const legend = series.map((s, i) => `<rect x="${W - R - 170}" y="${T + 8 + i * 18}" width="12" height="12" fill="${s.color}"/><text x="${W - R - 152}" y="${T + 18 + i * 18}" font-size="12">${esc(s.label)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>` +
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>${grid.join('')}${xticks.join('')}${lines.join('')}${legend.join('')}` +
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle" font-size="12">${esc(xLabel)}</text>` +
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 16 ${(T + H - B) / 2})">${esc(yLabel)}</text></svg>\n`;
}
