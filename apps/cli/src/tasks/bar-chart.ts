/** A small self-contained SVG chart of grouped bars (one or more panels), for the experiments' reports. */

/** One bar: a series' value in a group, with an optional 95% CI. */
export interface Bar {
  series: string;
  value: number;
  ciLow?: number;
  ciHigh?: number;
}

/** One panel: groups of bars on a common y axis. */
export interface BarPanel {
  title: string;
  yLabel: string;
  groups: ReadonlyArray<{ label: string; bars: readonly Bar[] }>;
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const finite = (x: number | undefined): x is number => x !== undefined && Number.isFinite(x);

/**
 * Panels side by side, each a `<g data-panel="title">` with one `<rect data-series=... data-group=...>`
 * a bar (a CI whisker where given), the y axis from 0 (or the lowest value, if negative) to the
 * highest value or CI bound; a legend of the series' colours.
 */
export function groupedBarsSvg(
  panels: readonly BarPanel[],
  o: { title: string; series: ReadonlyArray<{ name: string; color: string }>; yDigits?: number },
): string {
  const panelW = 320;
  const H = 340;
  const W = 40 + panels.length * (panelW + 20) + 140;
  const top = 50;
  const bottom = H - 50;
  const d = o.yDigits ?? 2;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">${esc(o.title)}</text>`,
  ];
  panels.forEach((p, pi) => {
    const left = 60 + pi * (panelW + 20);
    const right = left + panelW - 40;
    const vals = p.groups.flatMap((g) => g.bars.flatMap((b) => [b.value, b.ciLow, b.ciHigh])).filter(finite);
    const y0 = Math.min(0, ...vals);
    const y1 = Math.max(...vals, y0 + 1e-9) * 1.08;
    const Y = (v: number) => bottom - ((bottom - top) * (v - y0)) / (y1 - y0);
    parts.push(
      `<g data-panel="${esc(p.title)}">`,
      `<text x="${(left + right) / 2}" y="${top - 12}" text-anchor="middle" font-size="12">${esc(p.title)}</text>`,
      `<line x1="${left}" y1="${Y(0).toFixed(1)}" x2="${right}" y2="${Y(0).toFixed(1)}" stroke="#333"/>`,
      `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333"/>`,
      `<text x="${left - 40}" y="${(top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 ${left - 40} ${(top + bottom) / 2})">${esc(p.yLabel)}</text>`,
    );
    for (let i = 0; i <= 4; i++) {
      const v = y0 + ((y1 - y0) * i) / 4;
      parts.push(
        `<text x="${left - 4}" y="${(Y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(d)}</text>`,
      );
    }
    const gw = (right - left) / Math.max(1, p.groups.length);
    p.groups.forEach((g, gi) => {
      const gx = left + gi * gw;
      const bw = (gw * 0.8) / Math.max(1, g.bars.length);
      parts.push(
        `<text x="${(gx + gw / 2).toFixed(1)}" y="${bottom + 16}" text-anchor="middle">${esc(g.label)}</text>`,
      );
      g.bars.forEach((b, bi) => {
        if (!Number.isFinite(b.value)) return;
        const color = o.series.find((s) => s.name === b.series)?.color ?? '#888';
        const x = gx + gw * 0.1 + bi * bw;
        const yTop = Math.min(Y(b.value), Y(0));
        const h = Math.abs(Y(b.value) - Y(0));
        const ci = finite(b.ciLow) && finite(b.ciHigh);
        parts.push(
          `<rect data-series="${esc(b.series)}" data-group="${esc(g.label)}" x="${x.toFixed(1)}" y="${yTop.toFixed(1)}" width="${(bw * 0.9).toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"><title>${esc(b.series)}, ${esc(g.label)}: ${b.value.toFixed(d + 1)}${ci ? ` (95% CI ${(b.ciLow as number).toFixed(d + 1)}–${(b.ciHigh as number).toFixed(d + 1)})` : ''}</title></rect>`,
        );
        if (ci) {
          const cx = (x + bw * 0.45).toFixed(1);
          parts.push(
            `<line x1="${cx}" y1="${Y(b.ciLow as number).toFixed(1)}" x2="${cx}" y2="${Y(b.ciHigh as number).toFixed(1)}" stroke="#222"/>`,
          );
        }
      });
    });
    parts.push('</g>');
  });
  const lx = W - 130;
  o.series.forEach((s, i) => {
    const ly = top + i * 18;
    parts.push(
      `<rect x="${lx}" y="${ly - 8}" width="14" height="10" fill="${s.color}"/>`,
      `<text x="${lx + 20}" y="${ly + 1}">${esc(s.name)}</text>`,
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
