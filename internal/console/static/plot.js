// Small time-series plots on <canvas>, drawn by hand (no library): a
// shared x axis of equal bins ending now, one or more series as lines or
// bars, a y axis starting at 0 with a few gridlines.
'use strict';

const plot = (() => {
  const niceMax = (v) => {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  };
  const fmt = (v) => (v >= 1000 ? (v / 1000).toFixed(v >= 10000 ? 0 : 1) + 'k' : v >= 10 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1));

  // draw renders series on canvas. opts: {bins: n, binSeconds, series:
  // [{label, color, values: [n numbers or null], bars: bool}], unit}.
  // The canvas gets data-points (the sum of the first series) so tests
  // can tell what is drawn.
  function draw(canvas, opts) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 400, h = canvas.clientHeight || 170;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const left = 42, right = 8, top = 8, bottom = 20;
    const pw = w - left - right, ph = h - top - bottom;
    let max = 0;
    for (const s of opts.series) for (const v of s.values) if (v != null && v > max) max = v;
    max = niceMax(max);
    const n = opts.bins;
    const x = (i) => left + (i / n) * pw;
    const y = (v) => top + ph - (v / max) * ph;

    g.font = '11px system-ui, sans-serif';
    g.strokeStyle = '#e6e9ef';
    g.fillStyle = '#6b7385';
    g.lineWidth = 1;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      g.beginPath();
      g.moveTo(left, Math.round(y(v)) + 0.5);
      g.lineTo(left + pw, Math.round(y(v)) + 0.5);
      g.stroke();
      g.fillText(fmt(v) + (k === 4 && opts.unit ? ' ' + opts.unit : ''), left - 4, y(v));
    }
    g.textAlign = 'center';
    g.textBaseline = 'top';
    const minutes = (n * opts.binSeconds) / 60;
    for (let k = 0; k <= 4; k++) {
      const i = (n * k) / 4;
      const ago = Math.round(minutes - (minutes * k) / 4);
      g.fillText(ago === 0 ? 'now' : '-' + ago + 'm', x(i), top + ph + 5);
    }
    opts.series.forEach((s, si) => {
      g.strokeStyle = g.fillStyle = s.color;
      if (s.bars) {
        const bw = Math.max(1, pw / n - 1);
        s.values.forEach((v, i) => {
          if (v > 0) g.fillRect(x(i), y(v), bw, top + ph - y(v));
        });
        return;
      }
      g.lineWidth = 1.75;
      g.beginPath();
      let pen = false;
      s.values.forEach((v, i) => {
        if (v == null) { pen = false; return; }
        const px = x(i + 0.5), py = y(v);
        if (pen) g.lineTo(px, py); else g.moveTo(px, py);
        pen = true;
        if (s.values[i - 1] == null && s.values[i + 1] == null) g.fillRect(px - 1.5, py - 1.5, 3, 3);
      });
      g.stroke();
    });
    const total = opts.series.length ? opts.series[0].values.reduce((a, v) => a + (v || 0), 0) : 0;
    canvas.dataset.points = String(total);
  }

  function legend(el, series) {
    el.textContent = '';
    for (const s of series) {
      const span = document.createElement('span');
      const i = document.createElement('i');
      i.style.background = s.color;
      span.append(i, s.label);
      el.append(span);
    }
  }

  return { draw, legend };
})();
