// nbinfer throughput chart (part of the dashboard's module): prefill and decode tokens/s over the
// last minute, newest on the right.

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawSparkline(canvas, { series, capacity, width, height }) {
  // series: [{values, colour}, ...]
  capacity = Math.max(2, capacity);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);

  const top = 12, bottom = height - 2, left = 0, right = width - 1;
  const peak = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const y = (v) => bottom - (v / peak) * (bottom - top);
  const x = (i, n) => right - (n - 1 - i) * ((right - left) / (capacity - 1));

  ctx.strokeStyle = "rgba(127,127,127,0.25)";
  ctx.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const yy = Math.round(y(peak * f)) + 0.5;
    ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(right, yy); ctx.stroke();
  }
  ctx.fillStyle = "rgba(127,127,127,0.9)";
  ctx.font = "10px sans-serif";
  ctx.fillText(`${peak.toLocaleString()} tok/s`, 2, 9);

  for (const s of series) {
    const n = s.values.length;
    if (n < 2) continue;
    ctx.beginPath();
    s.values.forEach((v, i) => (i ? ctx.lineTo(x(i, n), y(v)) : ctx.moveTo(x(i, n), y(v))));
    ctx.lineTo(x(n - 1, n), bottom);
    ctx.lineTo(x(0, n), bottom);
    ctx.closePath();
    ctx.globalAlpha = 0.15; ctx.fillStyle = s.colour; ctx.fill(); ctx.globalAlpha = 1;
    ctx.beginPath();
    s.values.forEach((v, i) => (i ? ctx.lineTo(x(i, n), y(v)) : ctx.moveTo(x(i, n), y(v))));
    ctx.strokeStyle = s.colour; ctx.lineWidth = 1.5; ctx.stroke();
  }
}
