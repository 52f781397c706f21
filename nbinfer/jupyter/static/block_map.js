// nbinfer KV block map (part of the dashboard's module: widgets.py joins the static/*.js files).
// The cells come from block_grid.py: `codes` (one byte per cell), `used` and `cached` (uint16 block
// counts per cell), `owners` (hover lists). Up to a couple of thousand blocks each block is a square;
// a bigger pool is a fixed grid whose squares fill from the bottom by their used share (in the colour
// of the request holding most of it) and then their cached share.

const FREE = 0, CACHED = 1, SHARED = 2, FIRST_REQUEST = 3;

function uint16s(view) {
  // the kernel sends little-endian uint16; a DataView reads them wherever the bytes start
  if (!view || !view.byteLength) return new Uint16Array(0);
  const out = new Uint16Array(view.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true);
  return out;
}

function bytesOf(view) {
  return view && view.byteLength ? new Uint8Array(view.buffer, view.byteOffset, view.byteLength) : new Uint8Array(0);
}

function readBlockMap(model) {
  return {
    codes: bytesOf(model.get("codes")),
    used: uint16s(model.get("used")),
    cached: uint16s(model.get("cached")),
    total: model.get("blocks_total"),
    columns: model.get("grid_columns"),
    owners: model.get("owners"),            // colour slot -> request id
    cellOwners: model.get("cell_owners"),   // cell -> [shared, more, slot, blocks, ...]
    states: model.get("state_colours"),
    palette: model.get("request_colours"),
    width: model.get("width"),
  };
}

function blockRange(map, i) {
  // block b is in cell floor(b * cells / n) (block_grid.py)
  const n = map.total, c = map.codes.length;
  return [Math.ceil((i * n) / c), Math.ceil(((i + 1) * n) / c)];
}

function blockMapLayout(map) {
  const n = Math.max(1, map.codes.length);
  if (map.columns) {                        // the fixed grid of a big pool
    const cols = map.columns;
    return { cols, rows: Math.ceil(n / cols), size: Math.max(4, Math.floor(map.width / cols)) };
  }
  // one square per block: wide rather than tall, squares between 4 and 16 px
  let cols = Math.max(1, Math.ceil(Math.sqrt(n * 4)));
  let size = Math.floor(map.width / cols);
  if (size > 16) size = 16;
  if (size < 4) { size = 4; cols = Math.max(1, Math.floor(map.width / size)); }
  return { cols, rows: Math.ceil(n / cols), size };
}

function codeColour(map, code) {
  if (code === FREE) return map.states.free;
  if (code === CACHED) return map.states.cached;
  if (code === SHARED) return map.states.shared;
  return map.palette[(code - FIRST_REQUEST) % map.palette.length];
}

function fillHeight(count, blocks, inner) {
  // any use shows (2 px at least); a cell that is not full never looks full (status.py: fill_height)
  if (count <= 0 || blocks <= 0) return 0;
  if (count >= blocks) return inner;
  return Math.min(inner - 1, Math.max(2, Math.round((inner * count) / blocks * 10) / 10));
}

function drawBlockMap(canvas, map) {
  const geometry = blockMapLayout(map);
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
  const inner = size - gap;
  const round = size >= 8 && ctx.roundRect;
  let usedCells = 0, cachedCells = 0, sharedCells = 0, usedBlocks = 0, cachedBlocks = 0;
  for (let i = 0; i < map.codes.length; i++) {
    const x = (i % cols) * size;
    const y = Math.floor(i / cols) * size;
    const [first, end] = blockRange(map, i);
    const usedH = fillHeight(map.used[i], end - first, inner);
    const cachedH = Math.min(inner - usedH, fillHeight(map.cached[i], end - first, inner));
    if (round) {                             // rounded corners for the whole square, fills clipped to it
      ctx.save();
      ctx.beginPath();
      ctx.roundRect(x, y, inner, inner, 1.5);
      ctx.clip();
    }
    ctx.fillStyle = map.states.free;
    ctx.fillRect(x, y, inner, inner - usedH - cachedH);
    ctx.fillStyle = map.states.cached;
    ctx.fillRect(x, y + inner - usedH - cachedH, inner, cachedH);
    ctx.fillStyle = codeColour(map, map.codes[i]);
    ctx.fillRect(x, y + inner - usedH, inner, usedH);
    if (round) ctx.restore();
    usedBlocks += map.used[i];
    cachedBlocks += map.cached[i];
    if (map.used[i]) usedCells++;
    if (map.cached[i]) cachedCells++;
    if (map.used[i] && map.codes[i] === SHARED) sharedCells++;
  }
  canvas.style.display = map.codes.length ? "" : "none";   // no blocks (no model, a remote server): no map
  // what is drawn, for tests and for anyone scripting the page
  Object.assign(canvas.dataset, {
    cells: String(map.codes.length), columns: String(cols), used: String(usedCells), cached: String(cachedCells),
    shared: String(sharedCells), usedBlocks: String(usedBlocks), cachedBlocks: String(cachedBlocks),
  });
  return geometry;
}

function cellAt(canvas, geometry, map, event) {
  const rect = canvas.getBoundingClientRect();
  const { cols, size } = geometry;
  const col = Math.floor((event.clientX - rect.left) / size);
  const row = Math.floor((event.clientY - rect.top) / size);
  const i = row * cols + col;
  return col < 0 || col >= cols || row < 0 || i >= map.codes.length ? -1 : i;
}

function ownerList(map, entry) {
  // entry: [shared, more, slot, blocks, slot, blocks, ...]
  const names = [];
  for (let k = 2; k + 1 < entry.length; k += 2) names.push([map.owners[String(entry[k])] || "a request", entry[k + 1]]);
  return { shared: entry[0], more: entry[1], names };
}

function describeCell(map, i) {
  const [first, end] = blockRange(map, i);
  const fmt = (v) => v.toLocaleString("en-US");
  const code = map.codes[i];
  const entry = map.cellOwners[String(i)];
  if (end - first === 1) {                  // one block
    let what = "free";
    if (code === CACHED) what = "cached prefix (reusable, evictable)";
    else if (entry) what = `shared by ${ownerList(map, entry).names.map(([n]) => n).join(", ")}`;
    else if (code === SHARED) what = "shared by several sequences of one request";
    else if (code >= FIRST_REQUEST) what = `used by ${map.owners[String(code - FIRST_REQUEST)] || "a request"}`;
    return `block ${fmt(first)}: ${what}`;
  }
  const used = map.used[i], cached = map.cached[i], free = end - first - used - cached;
  const parts = [];
  if (used) {
    let by = "";
    if (entry) {
      const o = ownerList(map, entry);
      by = " by " + o.names.map(([n, b]) => `${n} (${fmt(b)})`).join(", ") + (o.more ? ` and ${o.more} more` : "");
      if (o.shared) by += `, ${fmt(o.shared)} of them shared`;
    }
    parts.push(`${fmt(used)} used${by}`);
  }
  if (cached) parts.push(`${fmt(cached)} cached prefix`);
  if (free || !parts.length) parts.push(`${fmt(free)} free`);
  return `blocks ${fmt(first)}–${fmt(end - 1)} (${fmt(end - first)}): ${parts.join(" · ")}`;
}

function blockMapLegend(legend, map) {
  const swatch = (colour) => {
    const s = document.createElement("span");
    s.className = "nbinfer-blockmap-swatch";
    s.style.background = colour;
    return s;
  };
  legend.replaceChildren();
  legend.style.display = map.total ? "" : "none";     // no blocks (no model, a remote server): no legend
  for (const [label, colour] of [["free", map.states.free], ["cached prefix", map.states.cached],
                                 ["shared", map.states.shared]]) {
    const item = document.createElement("span");
    item.append(swatch(colour), label);
    legend.append(item);
  }
  const used = document.createElement("span");
  for (const colour of map.palette.slice(0, 4)) used.append(swatch(colour));
  used.append(map.columns ? "used (colour of the request holding most of the square)" : "used (one colour per request)");
  legend.append(used);
}
