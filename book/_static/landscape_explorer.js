/* The landscape explorer (book/landscape_explorer.md): the path-count landscape of a chosen
   network at initialisation, computed exactly in the page and drawn with Plotly.js.

   The network: `depth` x [convolution, then the pooling if one is chosen], then global average
   pooling and a readout. N(u), the number of paths from input pixel u to the output, is what
   pilcro_lib.paths.path_count computes (weighting "count"). For square kernels every layer
   acts on the rows and on the columns independently: its connectivity is the Kronecker
   product of two 1-D connectivity matrices (zero, reflect, replicate and circular padding,
   stride, dilation and pooling windows included), so N(i, j) = n_rows(i) * n_cols(j) with
   n = A_1^T ... A_L^T 1 along each axis. The counts are BigInt: exact at any size.

   window.landscapeExplorer.current() returns what the page shows (the map, its profiles and
   figures), compute(settings) the same for any settings, and rendered() a promise that settles
   when the plots have been drawn. */
(function () {
  "use strict";

  const PADDINGS = ["zeros", "reflect", "replicate", "circular", "valid", "full"];
  const POOLS = ["none", "max", "avg"];
  const ROUNDINGS = ["floor", "ceil"];
  // setting: [label, smallest, largest]
  const NUMBERS = {
    kernel: ["Kernel size", 1, 11],
    stride: ["Stride", 1, 4],
    dilation: ["Dilation", 1, 4],
    depth: ["Conv layers", 1, 10],
    poolSize: ["Pooling size", 1, 5],
    poolStride: ["Pooling stride", 1, 5],
    height: ["Input height", 1, 128],
    width: ["Input width", 1, 128],
  };
  const RING = 2; // border ratio: the outer ring of 2 pixels (pilcro_lib.landscape.border_ratio)
  const BLIND_COLOUR = "#ff3d3d";

  class SettingError extends Error {
    constructor(setting, message) {
      super(message);
      this.setting = setting;
    }
  }

  function floorDiv(a, b) {
    return Math.floor(a / b);
  }

  function convPadding(s) {
    const span = s.dilation * (s.kernel - 1);
    if (s.padding === "valid") return 0;
    if (s.padding === "full") return span;
    return Math.floor(span / 2);
  }

  function paddingMode(s) {
    return ["reflect", "replicate", "circular"].includes(s.padding) ? s.padding : "zeros";
  }

  /* The input index read at padded coordinate p (null: a zero pad), as PyTorch pads. */
  function sourceIndex(p, n, mode) {
    if (p >= 0 && p < n) return p;
    if (mode === "zeros") return null;
    if (mode === "circular") return ((p % n) + n) % n;
    if (mode === "replicate") return Math.min(Math.max(p, 0), n - 1);
    return p < 0 ? -p : 2 * (n - 1) - p; // reflect: the edge pixel is not repeated
  }

  /* PyTorch's pooling output length (no padding, dilation 1). */
  function poolOut(n, k, s, ceil) {
    let out = floorDiv(n - k + (ceil ? s - 1 : 0), s) + 1;
    if (ceil && (out - 1) * s >= n) out -= 1;
    return out;
  }

  /* The layers along one axis, each {name, nIn, nOut, sources(o)}: the input indices that
     output o reads, repeated as often as it reads them. */
  function axisLayers(s, length, axis) {
    const layers = [];
    const pad = convPadding(s);
    const mode = paddingMode(s);
    const reach = s.dilation * (s.kernel - 1) + 1;
    const poolName = s.pool === "max" ? "max pool" : "avg pool";
    let n = length;
    for (let layer = 1; layer <= s.depth; layer++) {
      const nIn = n;
      const where = layer === 1 ? "the input" : `the map entering conv layer ${layer}`;
      if (mode !== "zeros" && pad >= nIn) {
        throw new SettingError(
          axis.setting,
          `${axis.label} ${length} is too small: ${where} is ${nIn} pixel${nIn === 1 ? "" : "s"} ` +
            `${axis.extent}, and ${mode} padding of ${pad} pixels needs at least ${pad + 1}. ` +
            `Make the input larger, or use fewer conv layers, a smaller kernel size or dilation.`
        );
      }
      if (nIn + 2 * pad < reach) {
        throw new SettingError(
          axis.setting,
          `${axis.label} ${length} is too small: ${where} is ${nIn} pixel${nIn === 1 ? "" : "s"} ` +
            `${axis.extent} (${nIn + 2 * pad} padded), narrower than the kernel's reach of ` +
            `${reach} (kernel size ${s.kernel}, dilation ${s.dilation}). Make the input larger, ` +
            `or use fewer conv layers, a smaller kernel size or dilation.`
        );
      }
      const nOut = floorDiv(nIn + 2 * pad - reach, s.stride) + 1;
      layers.push({
        name: "conv",
        nIn,
        nOut,
        sources(o) {
          const found = [];
          for (let a = 0; a < s.kernel; a++) {
            const src = sourceIndex(o * s.stride + a * s.dilation - pad, nIn, mode);
            if (src !== null) found.push(src);
          }
          return found;
        },
      });
      n = nOut;
      if (s.pool !== "none") {
        const pIn = n;
        const pOut = poolOut(pIn, s.poolSize, s.poolStride, s.ceil);
        if (pOut < 1) {
          throw new SettingError(
            axis.setting,
            `${axis.label} ${length} is too small: the map entering the pooling after conv ` +
              `layer ${layer} is ${pIn} pixel${pIn === 1 ? "" : "s"} ${axis.extent}, smaller ` +
              `than the pooling size ${s.poolSize}. Make the input larger, or use fewer conv ` +
              `layers or a smaller pooling size.`
          );
        }
        layers.push({
          name: poolName,
          nIn: pIn,
          nOut: pOut,
          sources(o) {
            const found = [];
            for (let b = 0; b < s.poolSize; b++) {
              if (o * s.poolStride + b < pIn) found.push(o * s.poolStride + b);
            }
            return found;
          },
        });
        n = pOut;
      }
    }
    return layers;
  }

  /* n = A_1^T ... A_L^T 1 along one axis: BigInt path counts per input position. */
  function axisProfile(layers) {
    let counts = new Array(layers[layers.length - 1].nOut).fill(1n);
    for (let i = layers.length - 1; i >= 0; i--) {
      const layer = layers[i];
      const below = new Array(layer.nIn).fill(0n);
      for (let o = 0; o < layer.nOut; o++) {
        for (const src of layer.sources(o)) below[src] += counts[o];
      }
      counts = below;
    }
    return counts;
  }

  function checkSettings(raw) {
    const s = {};
    const choice = (name, label, allowed) => {
      if (!allowed.includes(raw[name])) {
        throw new SettingError(
          name,
          `${label} must be one of ${allowed.join(", ")}; it is "${raw[name]}".`
        );
      }
      return raw[name];
    };
    s.padding = choice("padding", "Padding", PADDINGS);
    s.pool = choice("pool", "Pooling", POOLS);
    const pooled = s.pool !== "none";
    s.ceil = pooled ? choice("rounding", "Pooling rounding", ROUNDINGS) === "ceil" : false;
    for (const [name, [label, lo, hi]] of Object.entries(NUMBERS)) {
      if (!pooled && (name === "poolSize" || name === "poolStride")) {
        s[name] = null; // no pooling: its settings are not read
        continue;
      }
      const text = String(raw[name] === undefined ? "" : raw[name]).trim();
      const value = Number(text);
      if (!/^\d+$/.test(text) || value < lo || value > hi) {
        throw new SettingError(
          name,
          `${label} must be a whole number from ${lo} to ${hi}; it is ` +
            `${text === "" ? "empty" : `"${text}"`}.`
        );
      }
      s[name] = value;
    }
    return s;
  }

  function mean(values) {
    let total = 0;
    for (const v of values) total += v;
    return total / values.length;
  }

  /* cv and border ratio as pilcro_lib.landscape defines them, on Lambda = N / mean(N). */
  function figures(map, height, width) {
    const flat = map.flat();
    const m = mean(flat);
    if (!(m > 0)) return { cv: null, borderRatio: null };
    const lam = flat.map((v) => v / m);
    const mu = mean(lam);
    const cv = Math.sqrt(mean(lam.map((v) => (v - mu) * (v - mu))));
    let borderRatio = null;
    if (Math.min(height, width) > 2 * RING) {
      const ring = [];
      const inside = [];
      for (let i = 0; i < height; i++) {
        for (let j = 0; j < width; j++) {
          const onRing = i < RING || i >= height - RING || j < RING || j >= width - RING;
          (onRing ? ring : inside).push(lam[i * width + j]);
        }
      }
      borderRatio = mean(ring) / mean(inside);
    }
    return { cv, borderRatio };
  }

  /* Everything the page shows for raw settings (strings or numbers, as the form holds them). */
  function compute(raw) {
    let s;
    try {
      s = checkSettings(raw);
      const rowLayers = axisLayers(s, s.height, {
        setting: "height",
        label: "Input height",
        extent: "tall",
      });
      const colLayers = axisLayers(s, s.width, {
        setting: "width",
        label: "Input width",
        extent: "wide",
      });
      const rows = axisProfile(rowLayers);
      const cols = axisProfile(colLayers);
      const exact = rows.map((r) => cols.map((c) => r * c));
      const map = exact.map((row) => row.map(Number));
      const centreRow = Math.floor(s.height / 2);
      const blind = [];
      exact.forEach((row, i) =>
        row.forEach((v, j) => {
          if (v === 0n) blind.push([i, j]);
        })
      );
      let largest = 0n;
      for (const row of exact) for (const v of row) if (v > largest) largest = v;
      const sizes = [`input ${s.height}×${s.width}`].concat(
        rowLayers.map((layer, i) => `${layer.name} ${layer.nOut}×${colLayers[i].nOut}`)
      );
      return Object.assign(
        {
          settings: s,
          error: null,
          height: s.height,
          width: s.width,
          map,
          exact: exact.map((row) => row.map(String)),
          rowProfile: rows.map(String),
          colProfile: cols.map(String),
          centreRow,
          profile: map[centreRow],
          blindSpots: blind,
          largest: String(largest),
          exactInDouble: largest <= BigInt(Number.MAX_SAFE_INTEGER),
          sizes,
        },
        figures(map, s.height, s.width)
      );
    } catch (error) {
      if (!(error instanceof SettingError)) throw error;
      return { settings: s || null, error: { setting: error.setting, message: error.message } };
    }
  }

  // --- the page -------------------------------------------------------------------------------

  let state = null;
  let drawn = Promise.resolve();

  function formSettings(form) {
    const data = new FormData(form);
    const raw = {};
    for (const name of ["padding", "pool", "rounding"].concat(Object.keys(NUMBERS))) {
      raw[name] = data.has(name) ? data.get(name) : form.elements[name].value;
    }
    return raw;
  }

  function format(value, digits) {
    if (value === null || value === undefined) return "n/a";
    return Number(value.toPrecision(digits)).toString();
  }

  function groupDigits(text) {
    return text.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function themeColours() {
    const style = getComputedStyle(document.body);
    const text = style.color || "#222";
    return { text, grid: "rgba(128, 128, 128, 0.3)" };
  }

  /* What both plots share: the theme's text colour and font on a transparent background. */
  function baseLayout(colours, height) {
    const font = getComputedStyle(document.body).fontFamily;
    return {
      font: { family: font, size: 13, color: colours.text },
      paper_bgcolor: "rgba(0, 0, 0, 0)",
      plot_bgcolor: "rgba(0, 0, 0, 0)",
      modebar: {
        bgcolor: "rgba(0, 0, 0, 0)",
        color: "rgba(128, 128, 128, 0.8)",
        activecolor: colours.text,
      },
      height,
      margin: { l: 60, r: 10, t: 30, b: 50 },
    };
  }

  function axisStyle(title, colours) {
    return {
      title: { text: title, standoff: 6 },
      color: colours.text,
      gridcolor: colours.grid,
      zeroline: false,
      automargin: true,
    };
  }

  function draw(root, result) {
    const mapDiv = root.querySelector("#lx-map");
    const profileDiv = root.querySelector("#lx-profile");
    const colours = themeColours();
    const config = {
      responsive: true,
      displaylogo: false,
      modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"],
    };
    const xs = Array.from({ length: result.width }, (_, j) => j);
    const ys = Array.from({ length: result.height }, (_, i) => i);
    const blindRows = result.blindSpots.map(([i]) => i);
    const blindCols = result.blindSpots.map(([, j]) => j);
    const showBlind = result.blindSpots.length > 0;
    const heatmap = {
      type: "heatmap",
      x: xs,
      y: ys,
      z: result.map,
      text: result.exact.map((row) => row.map(groupDigits)),
      colorscale: "Viridis",
      zauto: false,
      zmin: 0, // colour in proportion to the count: a blind spot is the darkest
      zmax: Math.max(1, ...result.map.map((row) => Math.max(...row))),
      hovertemplate: "row %{y}, column %{x}<br>%{text} paths<extra></extra>",
      colorbar: {
        title: { text: "path count", side: "right" },
        tickfont: { color: colours.text },
        exponentformat: "power",
        thickness: 14,
        len: 0.9,
      },
    };
    const blindMarks = {
      type: "scatter",
      mode: "markers",
      x: blindCols,
      y: blindRows,
      name: "blind spot (count 0)",
      marker: {
        symbol: "x-thin",
        size: Math.max(4, Math.min(10, 360 / Math.max(result.height, result.width))),
        line: { color: BLIND_COLOUR, width: 2 },
      },
      hovertemplate: "row %{y}, column %{x}<br>blind spot: 0 paths<extra></extra>",
      showlegend: true,
      visible: showBlind,
    };
    const centre = result.centreRow;
    const mapLayout = Object.assign(baseLayout(colours, 540), {
      xaxis: Object.assign(axisStyle("pixel column", colours), {
        showgrid: false,
        ticks: "outside",
        constrain: "domain",
        range: [-0.5, result.width - 0.5],
      }),
      yaxis: Object.assign(axisStyle("pixel row", colours), {
        showgrid: false,
        ticks: "outside",
        autorange: false,
        range: [result.height - 0.5, -0.5],
        scaleanchor: "x",
        scaleratio: 1,
        constrain: "domain",
      }),
      showlegend: showBlind,
      legend: { orientation: "h", x: 0, y: 1.01, yanchor: "bottom", font: { color: colours.text } },
      shapes: [
        {
          type: "line",
          xref: "x",
          yref: "y",
          x0: -0.5,
          x1: result.width - 0.5,
          y0: centre,
          y1: centre,
          line: { color: colours.text, width: 1, dash: "dot" },
        },
      ],
    });
    const profile = {
      type: "scatter",
      mode: result.width <= 64 ? "lines+markers" : "lines",
      x: xs,
      y: result.profile,
      text: result.exact[centre].map(groupDigits),
      name: `row ${centre}`,
      line: { color: "#3b7dd8", width: 2 },
      marker: { size: 5 },
      hovertemplate: "column %{x}<br>%{text} paths<extra></extra>",
      showlegend: false,
    };
    const profileBlind = result.blindSpots.filter(([i]) => i === centre).map(([, j]) => j);
    const profileMarks = {
      type: "scatter",
      mode: "markers",
      x: profileBlind,
      y: profileBlind.map(() => 0),
      name: "blind spot (count 0)",
      marker: { symbol: "x-thin", size: 9, line: { color: BLIND_COLOUR, width: 2 } },
      hovertemplate: "column %{x}<br>blind spot: 0 paths<extra></extra>",
      cliponaxis: false,
      showlegend: profileBlind.length > 0,
      visible: profileBlind.length > 0,
    };
    const top = Math.max(1, ...result.profile);
    const profileLayout = Object.assign(baseLayout(colours, 300), {
      xaxis: Object.assign(axisStyle("pixel column", colours), {
        range: [-0.5, result.width - 0.5],
      }),
      yaxis: Object.assign(axisStyle("path count", colours), {
        range: [-0.06 * top, 1.08 * top], // room for the blind-spot marks at 0
        exponentformat: "power",
      }),
      showlegend: profileBlind.length > 0,
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { color: colours.text } },
    });
    return Promise.all([
      Plotly.react(mapDiv, [heatmap, blindMarks], mapLayout, config),
      Plotly.react(profileDiv, [profile, profileMarks], profileLayout, config),
    ]);
  }

  function describe(root, result) {
    const out = (id, text) => {
      root.querySelector(id).textContent = text;
    };
    const blind = result.blindSpots.length;
    out("#lx-cv", format(result.cv, 4));
    out("#lx-border", format(result.borderRatio, 4));
    root.querySelector("#lx-border").title =
      result.borderRatio === null && result.cv !== null
        ? "needs at least 5 pixels per side (a ring of 2 pixels and an inside)"
        : "";
    out(
      "#lx-blind",
      blind === 0
        ? "none"
        : `${blind} of ${result.height * result.width} pixel${blind === 1 ? "" : "s"}`
    );
    out("#lx-largest", groupDigits(result.largest));
    out("#lx-sizes", result.sizes.join(" → "));
    out("#lx-row", String(result.centreRow));
    const note = [];
    if (result.cv === null) {
      note.push("No pixel reaches the output: every pixel is a blind spot, and cv and border " +
        "ratio are undefined.");
    } else if (result.borderRatio === null) {
      note.push("The border ratio needs at least 5 pixels per side (a 2-pixel ring and an inside).");
    }
    if (!result.exactInDouble) {
      note.push("Counts above 2^53 are drawn rounded to double precision; the hover text is exact.");
    }
    out("#lx-note", note.join(" "));
    root.querySelector("#lx-map").setAttribute(
      "aria-label",
      `Path-count map of ${result.height} by ${result.width} pixels; largest count ` +
        `${result.largest}; ${blind} blind spot${blind === 1 ? "" : "s"}.`
    );
    root.querySelector("#lx-profile").setAttribute(
      "aria-label",
      `Path counts along row ${result.centreRow}, columns 0 to ${result.width - 1}.`
    );
  }

  function update(root, form) {
    const poolOn = form.elements.pool.value !== "none";
    for (const name of ["poolSize", "poolStride", "rounding"]) {
      form.elements[name].disabled = !poolOn;
    }
    for (const element of form.querySelectorAll("[aria-invalid]")) {
      element.removeAttribute("aria-invalid");
    }
    const raw = formSettings(form);
    const result = compute(raw);
    state = Object.assign({ raw }, result);
    const message = root.querySelector("#lx-message");
    const output = root.querySelector("#lx-output");
    if (result.error) {
      const control = form.elements[result.error.setting];
      if (control && control.setAttribute) control.setAttribute("aria-invalid", "true");
      message.textContent = result.error.message;
      message.hidden = false;
      output.hidden = true;
      drawn = Promise.resolve();
      return;
    }
    message.textContent = "";
    message.hidden = true;
    output.hidden = false;
    describe(root, result);
    drawn = draw(root, result);
  }

  function start() {
    const root = document.getElementById("landscape-explorer");
    if (!root) return;
    const form = root.querySelector("form");
    const fallback = root.querySelector("#lx-fallback");
    if (typeof Plotly === "undefined") {
      fallback.textContent = "The plotting library (plotly.min.js) did not load: rebuild the book.";
      return;
    }
    fallback.hidden = true;
    form.hidden = false;
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("input", () => update(root, form));
    form.addEventListener("change", () => update(root, form));
    update(root, form);
    new MutationObserver(() => {
      if (state && !state.error) drawn = draw(root, state);
    }).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  }

  window.landscapeExplorer = {
    compute,
    current: () => state,
    rendered: () => drawn.then(() => true),
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
