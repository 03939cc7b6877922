// nmdose pages: the shared shell of every page. The language (English / Korean) and the labels every page
// shows (navigation, shared table headers), the helpers the pages' own scripts use (window.nmdose: fetch, tables,
// labels that follow the language toggle, charts, box plots with reference lines) and the toggle itself. Each
// page's code and labels are in its own script (shell.PAGE_SCRIPTS: dose.js, research.js, study.js, report.js,
// ...), loaded after this one, which calls window.nmdose.register. PACS-provided strings go into the DOM as text
// only (textContent), never as HTML.
(function () {
  "use strict";

  var I18N = {
    en: {
      "lang.toggle": "한국어", "nav.home": "Home", "nav.research": "Research PACS", "nav.dose": "Dose",
      "nav.patients": "Patients", "nav.names": "Standard names", "nav.scanners": "Scanners", "nav.report": "Report",
      "nav.alerts": "Alerts", "nav.projects": "Projects", "nav.orthanc": "Orthanc Explorer", "index.title": "nmdose",
      "empty": "no data", "error": "error", "sex.M": "male", "sex.F": "female", "sex.O": "other",
      "msg.dose_record": "Dose record of this study", "chart.level": "Reference level", "col.protocol": "Protocol",
      "col.description": "Description", "col.agent": "Radiopharmaceutical", "col.studies": "Studies",
      "col.date": "Date", "col.value": "Value", "col.reason": "Reason", "col.modality": "Modality",
      "col.status": "Status", "col.error": "Error", "col.attempts": "Attempts",
      "error.server": "error from the server"
    },
    ko: {
      "lang.toggle": "English", "nav.home": "홈", "nav.research": "연구 PACS", "nav.dose": "선량", "nav.patients": "환자",
      "nav.names": "표준 검사명", "nav.scanners": "장비", "nav.report": "보고서", "nav.alerts": "선량 경보",
      "nav.projects": "연구 프로젝트", "nav.orthanc": "Orthanc 탐색기", "index.title": "nmdose", "empty": "데이터 없음",
      "error": "오류", "sex.M": "남", "sex.F": "여", "sex.O": "기타", "msg.dose_record": "이 검사의 선량 기록",
      "chart.level": "진단참고수준 (DRL)", "col.protocol": "프로토콜", "col.description": "검사명", "col.agent": "방사성의약품",
      "col.studies": "검사 수", "col.date": "날짜", "col.value": "값", "col.reason": "사유", "col.modality": "모달리티",
      "col.status": "상태", "col.error": "오류", "col.attempts": "시도", "error.server": "서버 오류"
    }
  };
  var COLORS = ["#2e7d32", "#f9a825", "#c62828", "#9e9e9e", "#1565c0", "#6a1b9a", "#00838f", "#ef6c00"];
  var body = document.body;
  var root = body.getAttribute("data-root");          // the /nmdose/ folder, relative
  var orthancRoot = root + "../";                      // Orthanc's own root
  var lang = localStorage.getItem("nmdose.lang") || body.getAttribute("data-default-lang") || "en";
  var charts = {};
  var langListeners = [];  // the pages' own relabelling on a language switch (nmdose.onLang)

  function t(key) { return (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key; }

  // A translated text with its {name} placeholders replaced by `vars` (an object, or its JSON).
  function tv(key, vars) {
    var v = typeof vars === "string" ? JSON.parse(vars) : vars || {};
    return t(key).replace(/\{(\w+)\}/g, function (m, name) { return name in v ? String(v[name]) : m; });
  }

  // Every label of the page in the language of the moment. A key of a page script not registered yet (this runs
  // once before the page's own script adds its labels) keeps the page's English text instead of showing the key.
  function applyLang() {
    var known = function (key) { return Object.prototype.hasOwnProperty.call(I18N.en, key); };
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach(function (el) {
      var key = el.getAttribute("data-i18n");
      if (known(key)) el.textContent = tv(key, el.getAttribute("data-i18n-vars"));
    });
    document.querySelectorAll("[data-i18n-title]").forEach(function (el) {
      var key = el.getAttribute("data-i18n-title");
      if (known(key)) el.title = tv(key, el.getAttribute("data-i18n-title-vars"));
    });
    Object.keys(charts).forEach(function (k) { if (charts[k].relabel) charts[k].relabel(); });
    langListeners.forEach(function (fn) { fn(lang); });
  }

  function api(path, params) {
    var q = new URLSearchParams(params || {}).toString();
    return window.nmdoseFetch(root + "api/" + path + (q ? "?" + q : ""), {credentials: "same-origin"}).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error(data.error || r.statusText);
        return data;
      });
    });
  }

  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(2);
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  // Fill <table id=...> with rows; `columns` is a list of [key, header] or [key, header, fn(row) -> Node|text];
  // `emptyKey`: the label of a table without rows (default: "no data"; the dose page's "empty.filtered", how
  // filters match, is shown as a hint).
  function table(id, rows, columns, emptyKey) {
    var el = document.getElementById(id);
    if (!el) return;
    el.replaceChildren();
    var head = el.createTHead().insertRow();
    columns.forEach(function (c) {
      var th = document.createElement("th");
      if (c[1].indexOf("col.") === 0) th.setAttribute("data-i18n", c[1]);  // translated header
      th.textContent = t(c[1]);
      head.appendChild(th);
    });
    var tb = el.createTBody();
    if (!rows.length) {
      var td = tb.insertRow().insertCell();
      td.colSpan = columns.length;
      var key = emptyKey || "empty";
      td.setAttribute("data-i18n", key);
      td.textContent = t(key);
      td.className = key === "empty.filtered" ? "hint" : "";
    }
    rows.forEach(function (row) {
      var tr = tb.insertRow();
      columns.forEach(function (c) {
        var cell = tr.insertCell();
        var v = c[2] ? c[2](row) : fmt(row[c[0]]);
        if (v instanceof Node) cell.appendChild(v); else cell.textContent = v;
      });
    });
    el.setAttribute("data-rows", String(rows.length));
    el.removeAttribute("data-stale");
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  // A text node that follows the language toggle.
  function label(key, vars) {
    var span = document.createElement("span");
    span.setAttribute("data-i18n", key);
    if (vars) span.setAttribute("data-i18n-vars", JSON.stringify(vars));
    span.textContent = tv(key, vars);
    return span;
  }

  // Set an element's translated text with placeholders (kept for the language toggle).
  function setLabel(el, key, vars) {
    el.setAttribute("data-i18n", key);
    el.setAttribute("data-i18n-vars", JSON.stringify(vars || {}));
    el.textContent = tv(key, vars);
  }

  // A server error: a translated prefix (follows the language toggle) and the server's own message.
  function errorText(err) {
    var span = document.createElement("span");
    span.appendChild(label("error.server"));
    span.appendChild(document.createTextNode(": " + err.message));
    return span;
  }

  function showError(id, err) {
    var el = document.getElementById(id);
    if (el) { el.replaceChildren(); el.insertRow().insertCell().appendChild(errorText(err)); }
  }

  // Forget the chart drawn on canvas `id`, if any (its canvas stays).
  function dropChart(id) {
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
  }

  function chart(id, config) {
    if (charts[id]) charts[id].destroy();
    var canvas = document.getElementById(id);
    config.options = Object.assign({animation: false, responsive: true, maintainAspectRatio: false},
                                   config.options || {});
    charts[id] = new Chart(canvas, config);
    canvas.removeAttribute("data-stale");
    var points = config.data.datasets.reduce(function (n, d) {
      return n + d.data.filter(function (x) { return x !== null && x !== 0; }).length;
    }, 0);
    canvas.setAttribute("data-points", String(points));
    return charts[id];
  }

  // Box plots and reference levels on floating-bar charts. A dataset with `box` (one
  // {q1, median, q3, whisker_low, whisker_high} or null per label) gets a median line and whiskers; one with
  // `refs` (a list of {value, status, name} per label) gets a dashed line per level across its bar, on the
  // dataset's own y axis. The number of level lines drawn goes to the canvas's data-ref-lines.
  function barAt(chart, di, i) {
    var meta = chart.getDatasetMeta(di);
    if (meta.hidden || !meta.data[i]) return null;
    var bar = meta.data[i].getProps(["x", "width"], true);
    return {x: bar.x, half: bar.width / 2, y: chart.scales[meta.yAxisID]};
  }

  var boxPlugin = {
    id: "nmdoseBox",
    afterDatasetsDraw: function (chart) {
      var ctx = chart.ctx;
      var lines = 0;
      chart.data.datasets.forEach(function (ds, di) {
        (ds.box || []).forEach(function (b, i) {
          var bar = b && barAt(chart, di, i);
          if (!bar) return;
          var y = bar.y;
          ctx.save();
          ctx.strokeStyle = "#222";
          ctx.lineWidth = 2;
          ctx.beginPath();
          ctx.moveTo(bar.x - bar.half, y.getPixelForValue(b.median));
          ctx.lineTo(bar.x + bar.half, y.getPixelForValue(b.median));
          ctx.stroke();
          ctx.lineWidth = 1;
          [[b.q3, b.whisker_high], [b.q1, b.whisker_low]].forEach(function (w) {
            if (w[1] === null || w[1] === undefined) return;
            ctx.beginPath();
            ctx.moveTo(bar.x, y.getPixelForValue(w[0]));
            ctx.lineTo(bar.x, y.getPixelForValue(w[1]));
            ctx.moveTo(bar.x - bar.half / 2, y.getPixelForValue(w[1]));
            ctx.lineTo(bar.x + bar.half / 2, y.getPixelForValue(w[1]));
            ctx.stroke();
          });
          ctx.restore();
        });
        (ds.refs || []).forEach(function (levels, i) {
          var bar = levels && levels.length && barAt(chart, di, i);
          if (!bar) return;
          levels.forEach(function (lv) {
            var py = bar.y.getPixelForValue(lv.value);
            ctx.save();
            ctx.strokeStyle = lv.status === "official" ? "#d50000" : "#ff6d00";
            ctx.lineWidth = 2;
            ctx.setLineDash([6, 3]);
            ctx.beginPath();
            ctx.moveTo(bar.x - bar.half * 1.4, py);
            ctx.lineTo(bar.x + bar.half * 1.4, py);
            ctx.stroke();
            ctx.restore();
            lines += 1;
          });
        });
      });
      chart.canvas.setAttribute("data-ref-lines", String(lines));
    }
  };
  Chart.register(boxPlugin);
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;  // Korean labels in the charts too

  // A floating-bar box chart of up to two measures per group, each on its own y axis (left "y", right "y1").
  // `series`: [{key: i18n label, unit, rows, color}], rows from /api/dose/box (same group column `by`).
  // `panel` (the dose page's two panels of groups an order of magnitude apart, dose.js): {labels: its groups,
  // name: "high" or "low", title: i18n key of its title, axis: i18n key added to its axis titles}; without it,
  // every group of the series in one untitled chart.
  function boxChart(id, by, series, panel) {
    return boxPanel(id, by, series, panel ? panel.labels : boxGroups(series, by), panel || null);
  }

  // The groups of the series, sorted.
  function boxGroups(series, by) {
    var labels = [];
    series.forEach(function (s) {
      s.rows.forEach(function (r) { if (labels.indexOf(r[by]) < 0) labels.push(r[by]); });
    });
    return labels.sort();
  }

  // One box chart of `labels`; a `panel` titles the chart and its axes, the canvas carries data-panel (its
  // name), data-groups (JSON) and data-y-max (the left axis's top) for the browser tests.
  function boxPanel(id, by, series, labels, panel) {
    var scales = {};
    var keys = panel ? [panel.title, panel.axis] : null;
    var axisTitle = function (s) { return keys ? s.unit + " · " + t(keys[1]) : s.unit; };
    var datasets = series.map(function (s, k) {
      var axis = k === 0 ? "y" : "y1";
      var byGroup = {};
      s.rows.forEach(function (r) { byGroup[r[by]] = r; });
      var rows = labels.map(function (l) { return byGroup[l] || null; });
      var top = 0;
      rows.forEach(function (r) {
        if (!r) return;
        top = Math.max(top, r.whisker_high || 0, r.q3 || 0);
        (r.levels || []).forEach(function (lv) { top = Math.max(top, lv.value); });
      });
      scales[axis] = {position: k === 0 ? "left" : "right", beginAtZero: true, suggestedMax: top * 1.05,
                      title: {display: true, text: axisTitle(s)}, grid: {drawOnChartArea: k === 0}};
      return {label: t(s.key), i18n: s.key, yAxisID: axis, backgroundColor: s.color + "99",
              borderColor: s.color, borderWidth: 1,
              data: rows.map(function (r) { return r ? [r.q1, r.q3] : null; }),
              box: rows, refs: rows.map(function (r) { return r ? r.levels || [] : []; })};
    });
    datasets.push({label: t("chart.level"), i18n: "chart.level", type: "line", data: [],
                   borderColor: "#d50000", borderDash: [6, 3], backgroundColor: "#d50000"});
    var titleKey = keys ? keys[0] : null;
    var c = chart(id, {type: "bar", data: {labels: labels, datasets: datasets}, options: {scales: scales,
      plugins: {title: {display: !!panel, text: titleKey ? t(titleKey) : ""},
                tooltip: {callbacks: {label: function (item) {
        var b = item.dataset.box && item.dataset.box[item.dataIndex];
        if (!b) return item.dataset.label;
        return item.dataset.label + ": " + fmt(b.median) + " (Q1 " + fmt(b.q1) + ", Q3 " + fmt(b.q3) +
          ", n " + b.n + ")";
      }}}}}});
    var canvas = document.getElementById(id);
    if (panel) {
      canvas.setAttribute("data-panel", panel.name);
    } else {
      canvas.removeAttribute("data-panel");
    }
    canvas.setAttribute("data-groups", JSON.stringify(labels));
    canvas.setAttribute("data-y-max", String(c.scales.y ? c.scales.y.max : ""));
    c.relabel = function () {
      c.data.datasets.forEach(function (ds) { ds.label = t(ds.i18n); });
      if (titleKey) c.options.plugins.title.text = t(titleKey);
      series.forEach(function (s, k) { c.options.scales[k === 0 ? "y" : "y1"].title.text = axisTitle(s); });
      c.update();
    };
    return c;
  }

  // A warning shown as such (red, with a sign), never a plain cell.
  function warning(content) {
    var span = document.createElement("span");
    span.className = "warning";
    span.textContent = "⚠ ";
    span.appendChild(content instanceof Node ? content : document.createTextNode(content));
    return span;
  }

  // A value with a tooltip (the explanation stays one hover away).
  function withTitle(text, title) {
    var span = document.createElement("span");
    span.textContent = text;
    if (title) span.title = title;
    return span;
  }

  function studyLink(uid) { return link(root + "ui/study/" + encodeURIComponent(uid), uid); }

  document.getElementById("lang-toggle").addEventListener("click", function () {
    lang = lang === "ko" ? "en" : "ko";
    localStorage.setItem("nmdose.lang", lang);
    applyLang();
  });
  applyLang();
  var page = body.getAttribute("data-page");

  // The pages' own scripts (shell.PAGE_SCRIPTS, loaded after this file) use the same helpers and language:
  // nmdose.register(page, {en: {...}, ko: {...}}, run) adds the page's labels (both languages, the unit test of
  // the dictionaries reads them too), relabels the page and runs `run` when this is that page. onLang(fn): fn(lang)
  // after each relabelling (the language toggle), for text a page writes without a data-i18n key.
  window.nmdose = {
    root: root, orthancRoot: orthancRoot, t: t, tv: tv, api: api, fmt: fmt, table: table, link: link,
    label: label, setLabel: setLabel, errorText: errorText, showError: showError, chart: chart,
    dropChart: dropChart, boxChart: boxChart, boxGroups: boxGroups, warning: warning, withTitle: withTitle,
    studyLink: studyLink, colors: COLORS,
    lang: function () { return lang; },
    onLang: function (fn) { langListeners.push(fn); },
    register: function (name, labels, run) {
      ["en", "ko"].forEach(function (l) { Object.assign(I18N[l], (labels || {})[l] || {}); });
      if (name === page) { applyLang(); if (run) run(); }
    }
  };
})();
