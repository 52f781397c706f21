// nbinfer KV block map: one square per KV block (or per group of blocks for huge pools), coloured by
// state. The kernel sends one byte per cell in the `blocks` trait:
//   0 free · 1 cached prefix · 2 shared by several requests · 3+k used by the request in colour slot k

function layout(n, width) {
  // wide rather than tall: about 4 columns per row, squares between 4 and 16 px
  let cols = Math.max(1, Math.ceil(Math.sqrt(n * 4)));
  let size = Math.floor(width / cols);
  if (size > 16) { size = 16; }
  if (size < 4) { size = 4; cols = Math.max(1, Math.floor(width / size)); }
  return { cols, rows: Math.ceil(n / cols), size };
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbinfer-blockmap";
  const canvas = document.createElement("canvas");
  canvas.className = "nbinfer-blockmap-canvas";
  const info = document.createElement("div");
  info.className = "nbinfer-blockmap-info";
  const legend = document.createElement("div");
  legend.className = "nbinfer-blockmap-legend";
  root.append(canvas, legend, info);
  el.append(root);

  function swatch(colour) {
    const s = document.createElement("span");
    s.className = "nbinfer-blockmap-swatch";
    s.style.background = colour;
    return s;
  }

  function drawLegend() {
    const states = model.get("state_colours");
    const palette = model.get("request_colours");
    legend.replaceChildren();
    for (const [label, colour] of [["free", states.free], ["cached prefix", states.cached], ["shared", states.shared]]) {
      const item = document.createElement("span");
      item.append(swatch(colour), label);
      legend.append(item);
    }
    const used = document.createElement("span");
    for (const colour of palette.slice(0, 4)) used.append(swatch(colour));
    used.append("used (one colour per request)");
    legend.append(used);
  }

  let geometry = { cols: 1, rows: 1, size: 8 };
  let cells = new Uint8Array(0);

  function colour(code) {
    const states = model.get("state_colours");
    const palette = model.get("request_colours");
    if (code === 0) return states.free;
    if (code === 1) return states.cached;
    if (code === 2) return states.shared;
    return palette[(code - 3) % palette.length];
  }

  function draw() {
    const view = model.get("blocks");
    cells = view ? new Uint8Array(view.buffer, view.byteOffset, view.byteLength) : new Uint8Array(0);
    const width = model.get("width");
    geometry = layout(Math.max(1, cells.length), width);
    const { cols, rows, size } = geometry;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(cols * size * ratio);
    canvas.height = Math.round(rows * size * ratio);
    canvas.style.width = `${cols * size}px`;
    canvas.style.height = `${rows * size}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cols * size, rows * size);
    const gap = size >= 6 ? 1 : 0;
    const radius = size >= 8 ? 1.5 : 0;
    for (let i = 0; i < cells.length; i++) {
      const x = (i % cols) * size;
      const y = Math.floor(i / cols) * size;
      ctx.fillStyle = colour(cells[i]);
      if (radius && ctx.roundRect) {
        ctx.beginPath();
        ctx.roundRect(x, y, size - gap, size - gap, radius);
        ctx.fill();
      } else {
        ctx.fillRect(x, y, size - gap, size - gap);
      }
    }
    canvas.setAttribute("data-cells", String(cells.length));
    // counts for tests and for anyone scripting the page
    canvas.setAttribute("data-used", String(cells.filter((c) => c >= 2).length));
    canvas.setAttribute("data-cached", String(cells.filter((c) => c === 1).length));
    canvas.setAttribute("data-shared", String(cells.filter((c) => c === 2).length));
    info.textContent = model.get("caption");
  }

  function describe(event) {
    const rect = canvas.getBoundingClientRect();
    const { cols, size } = geometry;
    const col = Math.floor((event.clientX - rect.left) / size);
    const row = Math.floor((event.clientY - rect.top) / size);
    const i = row * cols + col;
    if (col < 0 || col >= cols || i < 0 || i >= cells.length) { info.textContent = model.get("caption"); return; }
    const per = model.get("blocks_per_cell");
    const first = i * per;
    const label = per > 1 ? `blocks ${first}–${first + per - 1}` : `block ${first}`;
    const code = cells[i];
    let what = "free";
    if (code === 1) what = "cached prefix (reusable, evictable)";
    else if (code === 2) what = "shared by several requests";
    else if (code >= 3) what = `used by ${model.get("owners")[String(code - 3)] || "a request"}`;
    info.textContent = `${label}: ${what}`;
  }

  drawLegend();
  model.on("change:state_colours", drawLegend);
  model.on("change:request_colours", drawLegend);
  canvas.addEventListener("mousemove", describe);
  canvas.addEventListener("mouseleave", () => { info.textContent = model.get("caption"); });
  const events = ["change:blocks", "change:width", "change:state_colours", "change:request_colours",
                  "change:caption"];
  for (const e of events) model.on(e, draw);
  draw();
  return () => { for (const e of events) model.off(e, draw); };
}

export default { render };
