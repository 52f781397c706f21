// nbinfer dashboard: one widget, one frame at a time. The kernel sends a whole frame (one stats
// snapshot) as one message; every part below is redrawn from it in one go, so the header, the block
// map, the memory bar and the batch table never show different moments.

const FRAME_TRAITS = ["frame_id", "header", "occupancy", "occupancy_label", "codes", "used", "cached",
  "blocks_total", "grid_columns", "owners", "cell_owners", "caption", "prefill", "decode", "capacity",
  "rates", "memory", "batch_title", "table", "width", "state_colours", "request_colours"];

function element(tag, className, parent) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (parent) parent.append(e);
  return e;
}

function render({ model, el }) {
  const root = element("div", "nbinfer-dashboard", el);
  const header = element("div", "nbinfer-header", root);
  element("div", "nbinfer-section", root).textContent = "KV cache";
  const occupancyRow = element("div", "nbinfer-occupancy-row", root);
  const bar = element("div", "nbinfer-bar", occupancyRow);
  const barFill = element("div", "nbinfer-bar-fill", bar);
  const occupancy = element("div", "nbinfer-occupancy-text", occupancyRow);
  const blockMap = element("div", "nbinfer-blockmap", root);
  const canvas = element("canvas", "nbinfer-blockmap-canvas", blockMap);
  const legend = element("div", "nbinfer-blockmap-legend", blockMap);
  const info = element("div", "nbinfer-blockmap-info", blockMap);
  const columns = element("div", "nbinfer-columns", root);
  const left = element("div", "nbinfer-column", columns);
  element("div", "nbinfer-section", left).textContent = "Throughput · last minute";
  const sparkline = element("canvas", "nbinfer-sparkline", left);
  const rates = element("div", "nbinfer-rates", left);
  const right = element("div", "nbinfer-column", columns);
  element("div", "nbinfer-section", right).textContent = "Memory";
  const memory = element("div", "nbinfer-memory", right);
  const batchTitle = element("div", "nbinfer-section nbinfer-batch-title", root);
  const table = element("div", "nbinfer-table", root);

  let map = null, geometry = null, hovered = -1, scheduled = false;

  function showInfo() {
    info.textContent = map && hovered >= 0 && hovered < map.codes.length ? describeCell(map, hovered)
      : model.get("caption");
  }

  function draw() {
    scheduled = false;
    const width = model.get("width");
    root.style.width = `${width}px`;
    header.innerHTML = model.get("header");
    barFill.style.width = `${Math.min(100, 100 * model.get("occupancy"))}%`;
    barFill.style.minWidth = model.get("occupancy") > 0 ? "2px" : "0";
    occupancy.innerHTML = model.get("occupancy_label");
    map = readBlockMap(model);
    geometry = drawBlockMap(canvas, map);
    blockMapLegend(legend, map);
    showInfo();
    const half = Math.floor((width - 30) / 2);
    drawSparkline(sparkline, {
      series: [{ values: model.get("prefill"), colour: model.get("prefill_colour") },
               { values: model.get("decode"), colour: model.get("decode_colour") }],
      capacity: model.get("capacity"), width: half, height: 64,
    });
    rates.innerHTML = model.get("rates");
    memory.innerHTML = model.get("memory");
    batchTitle.innerHTML = model.get("batch_title");
    table.innerHTML = model.get("table");
    root.dataset.frame = String(model.get("frame_id"));
  }

  function schedule() {
    // the traits of one message change one after another: draw once, after the last of them
    if (!scheduled) { scheduled = true; queueMicrotask(draw); }
  }

  canvas.addEventListener("mousemove", (event) => {
    if (!map) return;
    hovered = cellAt(canvas, geometry, map, event);
    showInfo();
  });
  canvas.addEventListener("mouseleave", () => { hovered = -1; showInfo(); });
  const events = FRAME_TRAITS.map((t) => `change:${t}`);
  for (const e of events) model.on(e, schedule);
  draw();
  return () => { for (const e of events) model.off(e, schedule); };
}

export default { render };
