// rtsave dashboard: charts (uPlot) of the runs picked, live through server-sent events.
// Series arrive downsampled (min/max/last buckets, POINTS per series); live points are
// appended; a zoom asks the server for the visible range again (full resolution when it fits).
"use strict";
(() => {
  const POINTS = 2000;
  const UPDATES_KEPT = 1000; // the newest live updates remembered in state.updates
  const COLORS = ["#1976d2", "#d32f2f", "#388e3c", "#f57c00", "#7b1fa2", "#0097a7", "#5d4037", "#c2185b",
                  "#455a64", "#afb42b", "#512da8", "#00796b"];
  const FIXED_CHARTS = [["return", "Episode return"], ["success_rate", "Success rate"],
                        ["reward", "Reward components"], ["cost", "Cost components"],
                        ["rand_power", "rand_power per env"], ["curriculum", "Curriculum progress"]];
  const state = {
    runs: [], // the runs shown, overlaid in every chart
    data: {}, // run -> series name -> {x: [], y: [], total: points of the server's series included}
    summaries: {},
    zoom: null, // [x0, x1] while zoomed
    zoomData: null,
    perEnv: false,
    charts: {}, // chart id -> {plot, key, lines}
    updates: [], // {run, timestep, at}: each live update once drawn (for tests and the benchmark)
    painted: false,
  };
  window.rtsaveDashboard = state;
  let source = null;
  let pendingMarks = [];
  let renderQueued = false;
  let refetching = {};

  const $ = (selector) => document.querySelector(selector);
  const element = (tag, attributes = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === "class") node.className = value; else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  };
  const fmt = (value, digits = 3) => value === null || value === undefined ? "–"
    : (typeof value === "number" ? (Number.isInteger(value) ? value.toLocaleString("en")
      : value.toLocaleString("en", {maximumFractionDigits: digits})) : String(value));
  const bytes = (n) => n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MiB" : n >= 1024 ? (n / 1024).toFixed(1) + " KiB"
    : n + " B";
  const duration = (seconds) => {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
  };
  const naturalCompare = (a, b) => a.localeCompare(b, "en", {numeric: true});

  // ------------------------------------------------------------------ series
  const chartOf = (name) => name.startsWith("learning/") ? name : name.split("/")[0];
  const shownInMode = (name) => {
    const group = name.split("/")[0];
    if (group !== "return" && group !== "success_rate") return true;
    return state.perEnv !== name.endsWith("/mean");
  };
  const toSeries = (series, lengths) => {
    const result = {};
    for (const [name, [x, y]] of Object.entries(series)) result[name] = {x, y, total: lengths ? lengths[name] : x.length};
    return result;
  };

  function applyUpdate(run, points) {
    const series = state.data[run];
    let stale = false;
    for (const [name, [start, xs, ys]] of Object.entries(points)) {
      const line = series[name] || (series[name] = {x: [], y: [], total: 0});
      const skip = line.total - start; // points of this update the line already has
      if (skip < 0) { stale = true; continue; }
      for (let i = skip; i < xs.length; i++) { line.x.push(xs[i]); line.y.push(ys[i]); }
      line.total = Math.max(line.total, start + xs.length);
      if (line.x.length > 2 * POINTS) stale = true;
    }
    if (stale) refetch(run);
  }

  async function fetchSeries(run, range) {
    const query = new URLSearchParams({run, points: POINTS});
    if (range) { query.set("x0", range[0]); query.set("x1", range[1]); }
    const answer = await (await fetch("/api/series?" + query)).json();
    return toSeries(answer.series, answer.lengths);
  }

  async function refetch(run) { // downsample again: live points made a line longer than 2 x POINTS
    if (refetching[run]) return;
    refetching[run] = true;
    try { state.data[run] = await fetchSeries(run, null); scheduleRender(); } finally { refetching[run] = false; }
  }

  async function zoomTo(x0, x1) {
    state.zoom = [x0, x1];
    const zoomed = {};
    await Promise.all(state.runs.map(async (run) => { zoomed[run] = await fetchSeries(run, state.zoom); }));
    if (state.zoom && state.zoom[0] === x0 && state.zoom[1] === x1) { state.zoomData = zoomed; scheduleRender(); }
  }

  function resetZoom() {
    state.zoom = null; state.zoomData = null; scheduleRender();
  }

  // ------------------------------------------------------------------ charts
  function chartLines() {
    const byChart = {};
    const data = state.zoomData || state.data;
    for (const run of state.runs) {
      for (const name of Object.keys(data[run] || {}).sort(naturalCompare)) {
        if (shownInMode(name)) (byChart[chartOf(name)] ||= []).push({run, name});
      }
    }
    return byChart;
  }

  function chartTitle(id) {
    const fixed = FIXED_CHARTS.find(([key]) => key === id);
    return fixed ? fixed[1] : id.slice("learning/".length);
  }

  function lineLabel(line) {
    const part = line.name.slice(line.name.indexOf("/") + 1);
    return state.runs.length > 1 ? `${line.run} ${part}` : part;
  }

  function drawCharts() {
    const byChart = chartLines();
    const order = FIXED_CHARTS.map(([id]) => id).filter((id) => byChart[id])
      .concat(Object.keys(byChart).filter((id) => id.startsWith("learning/")).sort(naturalCompare));
    const container = $("#charts");
    const data = state.zoomData || state.data;
    for (const id of Object.keys(state.charts)) {
      if (!byChart[id]) { state.charts[id].plot.destroy(); state.charts[id].box.remove(); delete state.charts[id]; }
    }
    for (const id of order) {
      const lines = byChart[id];
      const key = lines.map((line) => line.run + "\u0000" + line.name).join("\u0001");
      const joined = uPlot.join(lines.map((line) => [data[line.run][line.name].x, data[line.run][line.name].y]));
      let chart = state.charts[id];
      if (chart && chart.key !== key) { chart.plot.destroy(); chart.box.remove(); chart = null; }
      if (!chart) {
        const box = element("div", {class: "chart", "data-chart": id});
        container.append(box);
        const plot = new uPlot(chartOptions(id, lines, box), joined, box);
        box.addEventListener("dblclick", resetZoom);
        chart = state.charts[id] = {plot, box, key, lines};
      } else {
        chart.plot.setData(joined, !state.zoom);
      }
      if (state.zoom) chart.plot.setScale("x", {min: state.zoom[0], max: state.zoom[1]});
    }
    for (const id of order) container.append(state.charts[id].box); // keep the order when charts appear
  }

  function chartOptions(id, lines, box) {
    return {
      title: chartTitle(id),
      width: Math.max(300, box.clientWidth - 12),
      height: 170,
      scales: {x: {time: false}},
      series: [{label: "timestep"}].concat(lines.map((line, index) => ({
        label: lineLabel(line), stroke: COLORS[index % COLORS.length], width: 1.25, spanGaps: true,
      }))),
      cursor: {drag: {x: true, y: false, setScale: false}},
      hooks: {setSelect: [(plot) => {
        if (plot.select.width < 3) return;
        const x0 = plot.posToVal(plot.select.left, "x");
        const x1 = plot.posToVal(plot.select.left + plot.select.width, "x");
        plot.setSelect({left: 0, top: 0, width: 0, height: 0}, false);
        zoomTo(x0, x1);
      }]},
    };
  }

  /** Points drawn per line of a chart: [{run, name, points}] (uPlot.join fills the others with null or undefined). */
  state.shown = (id) => {
    const chart = state.charts[id];
    if (!chart) return [];
    return chart.lines.map((line, index) => ({
      run: line.run, name: line.name, points: chart.plot.data[index + 1].filter((v) => v != null).length,
    }));
  };
  state.maxX = (id) => {
    const chart = state.charts[id];
    return chart ? Math.max(...chart.plot.data[0]) : -Infinity;
  };

  // ------------------------------------------------------------------ text panels
  function drawCards() {
    const cards = $("#run-cards");
    cards.replaceChildren();
    const details = $("#details");
    details.replaceChildren();
    for (const run of state.runs) {
      const summary = state.summaries[run];
      if (!summary) continue;
      cards.append(runCard(summary));
      details.append(robotCard(summary), checkpointCard(summary), healthCard(summary));
    }
  }

  function runCard(summary) {
    const progress = summary.progress;
    const bar = element("div", {class: "progress", title: "timesteps of total"},
      element("div", {style: `width: ${((progress.fraction || 0) * 100).toFixed(1)}%`}));
    const timesteps = `${fmt(progress.timestep)} / ${fmt(progress.total_timesteps)} timesteps` +
      (progress.fraction === null ? "" : ` (${(progress.fraction * 100).toFixed(1)}%)`);
    return element("div", {class: "card run", "data-run": summary.name},
      element("div", {class: "run-head"},
        element("span", {class: "run-name", text: summary.name || summary.url}),
        element("span", {class: `badge ${summary.status.state}`, text: summary.status.state, "data-field": "status"}),
        ...(summary.loading ? [element("span", {class: "badge loading", text: "reading records…",
                                                "data-field": "loading"})] : []),
        element("span", {text: [summary.algorithm, summary.env].filter(Boolean).join(" on ")}),
        bar,
        element("span", {text: timesteps, "data-field": "timesteps"}),
        element("span", {text: `${fmt(progress.steps_per_second, 0)} steps/s`, "data-field": "steps-per-second"}),
        element("span", {text: `ETA ${summary.status.state === "running" ? duration(progress.eta_seconds) : "–"}`,
                         "data-field": "eta"}),
        element("span", {text: `${fmt(summary.records)} records`, "data-field": "records"})));
  }

  function table(headers, rows, attributes = {}) {
    return element("table", attributes,
      element("thead", {}, element("tr", {}, ...headers.map((h) => element("th", {text: h})))),
      element("tbody", {}, ...rows));
  }

  const forRun = (summary) => state.runs.length > 1 ? ` (${summary.name})` : "";
  const feetHeader = (summary) => "feet " + Object.keys((summary.envs[0] || {}).foot_contacts || {}).join(" ");

  function robotCard(summary) {
    const rows = summary.envs.map((env) => {
      const p = env.position || {}, o = env.orientation || {}, feet = env.foot_contacts || {};
      const contacts = element("td", {class: "text"}, ...Object.entries(feet).map(([foot, down]) =>
        element("span", {class: down ? "contact-on" : "contact-off", title: `${foot} ${down ? "in contact" : "in the air"}`,
                         text: down ? "●" : "○"})));
      return element("tr", {"data-env": env.env_id},
        ...[env.env_id, fmt(p.x, 2), fmt(p.y, 2), fmt(p.z, 2), fmt(o.roll, 2), fmt(o.pitch, 2), fmt(o.yaw, 2)]
          .map((v) => element("td", {text: String(v)})),
        contacts,
        ...[fmt(env.episode_count), fmt(env.success_rate, 3), fmt(env.rand_power, 3)]
          .map((v) => element("td", {text: v})));
    });
    return element("div", {class: "card"}, element("h3", {text: `Robot state per env${forRun(summary)}`}),
      table(["env", "x", "y", "z", "roll", "pitch", "yaw", feetHeader(summary), "episodes", "success", "rand_power"], rows),
      element("div", {text: `curriculum progress ${fmt(summary.curriculum_progress, 3)}`}));
  }

  function checkpointCard(summary) {
    const rows = summary.checkpoints.map((checkpoint) => {
      const copy = element("button", {class: "copy", text: "copy", title: "copy the resume command"});
      copy.addEventListener("click", () => copyText(checkpoint.resume_command || checkpoint.path, copy));
      return element("tr", {"data-checkpoint": checkpoint.name, title: checkpoint.path},
        element("td", {text: fmt(checkpoint.timestep)}),
        element("td", {text: bytes(checkpoint.bytes), "data-bytes": checkpoint.bytes}),
        element("td", {}, copy),
        element("td", {class: "resume", text: checkpoint.resume_command || "(no resume command)",
                       title: checkpoint.resume_command || ""}));
    });
    return element("div", {class: "card checkpoints"}, element("h3", {text: `Checkpoints, newest first${forRun(summary)}: ${summary.checkpoints.length}`}),
      rows.length ? table(["timestep", "size", "", "resume command"], rows) : element("div", {text: "none yet"}));
  }

  function healthCard(summary) {
    const h = summary.health;
    const cell = (label, value, bad) => element("tr", {},
      element("td", {class: "text", text: label}),
      element("td", {text: fmt(value), class: bad ? "value-bad" : "", "data-field": label}));
    return element("div", {class: `card health ${h.ok ? "ok" : "bad"}`, "data-ok": String(h.ok)},
      element("h3", {text: (h.ok ? "Writer health: ok" : "Writer health: records dropped or failed") + forRun(summary)}),
      table(["", ""], [cell("written", h.written, false), cell("dropped", h.dropped, h.dropped > 0),
        cell("failed", h.failed, h.failed > 0), cell("errors", h.errors.length, h.errors.length > 0),
        cell("queue peak", h.peak_queue_depth, false), cell("writers", h.writers, false)]),
      h.errors.length ? element("div", {class: "errors", text: h.errors.slice(-5).join("\n")}) : "");
  }

  async function copyText(text, button) {
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) { // no clipboard API (e.g. a page served over plain http to another host)
      const area = element("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "copied";
    setTimeout(() => { button.textContent = "copy"; }, 1500);
  }

  // ------------------------------------------------------------------ drawing and streams
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      drawCharts();
      drawCards();
      $("#zoom-note").hidden = !state.zoom;
      if (state.zoom) $("#zoom-range").textContent = `${fmt(state.zoom[0], 0)} – ${fmt(state.zoom[1], 0)}`;
      const now = Date.now();
      for (const mark of pendingMarks) state.updates.push({...mark, at: now});
      pendingMarks = [];
      if (state.updates.length > 2 * UPDATES_KEPT) state.updates.splice(0, state.updates.length - UPDATES_KEPT);
      if (!state.painted && state.runs.every((run) => state.data[run])) {
        state.painted = true;
        performance.mark("rtsave-charts-drawn");
        document.body.dataset.painted = "1";
      }
    });
  }

  function connect() {
    if (source) source.close();
    state.data = {}; state.summaries = {}; state.painted = false;
    if (!state.runs.length) { scheduleRender(); return; }
    const query = new URLSearchParams();
    for (const run of state.runs) query.append("run", run);
    source = new EventSource("/api/events?" + query);
    source.addEventListener("init", (event) => {
      const message = JSON.parse(event.data);
      state.data[message.run] = toSeries(message.series, message.lengths);
      state.summaries[message.run] = message.summary;
      scheduleRender();
    });
    source.addEventListener("update", (event) => {
      const message = JSON.parse(event.data);
      if (!state.data[message.run]) return;
      applyUpdate(message.run, message.points);
      state.summaries[message.run] = message.summary;
      if (Object.keys(message.points).length) {
        pendingMarks.push({run: message.run, timestep: message.summary.progress.timestep});
      }
      scheduleRender();
    });
  }

  async function loadRuns() {
    const answer = await (await fetch("/api/runs")).json();
    $("#root").textContent = answer.root;
    const names = answer.runs.map((run) => run.name);
    if (!state.runs.length) {
      const wanted = new URLSearchParams(location.hash.slice(1)).getAll("run").filter((name) => names.includes(name));
      state.runs = wanted.length ? wanted : names.slice(0, 1);
      connect();
    }
    const picker = $("#run-picker");
    picker.hidden = answer.runs.length < 2;
    const body = $("#run-table tbody");
    body.replaceChildren(...answer.runs.map((run) => {
      const box = element("input", {type: "checkbox", "data-run": run.name});
      box.checked = state.runs.includes(run.name);
      box.addEventListener("change", () => {
        state.runs = names.filter((name) => name === run.name ? box.checked : state.runs.includes(name));
        location.hash = new URLSearchParams(state.runs.map((name) => ["run", name])).toString();
        state.zoom = null; state.zoomData = null;
        connect();
      });
      return element("tr", {},
        element("td", {}, box), element("td", {class: "text", text: run.name || "(this folder)"}),
        element("td", {}, element("span", {class: `badge ${run.state}`, text: run.state})),
        element("td", {text: `${fmt(run.progress.timestep)} / ${fmt(run.progress.total_timesteps)}`}),
        element("td", {text: fmt(run.success_rate, 3)}),
        element("td", {text: run.last_update ? new Date(run.last_update * 1000).toLocaleString() : "–"}));
    }));
  }

  $("#per-env").addEventListener("change", (event) => { state.perEnv = event.target.checked; scheduleRender(); });
  window.addEventListener("resize", () => {
    for (const chart of Object.values(state.charts)) {
      chart.plot.setSize({width: Math.max(300, chart.box.clientWidth - 12), height: 170});
    }
  });
  loadRuns();
  setInterval(loadRuns, 5000);
})();
