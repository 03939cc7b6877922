// nmdose pages: fill tables and charts from /nmdose/api/. PACS-provided strings go into the DOM as text only
// (textContent), never as HTML.
(function () {
  "use strict";

  var I18N = {
    en: {
      "lang.toggle": "한국어", "nav.home": "Home", "nav.research": "Research PACS", "nav.dose": "Dose",
      "nav.orthanc": "Orthanc Explorer", "index.title": "nmdose",
      "research.title": "Research PACS: studies per year", "research.progress": "Progress",
      "research.census": "Census", "research.retrieve": "Retrieval",
      "research.yearly": "Studies per year and exam type",
      "research.new": "New descriptions waiting for acceptance", "research.corrections": "Modality corrections",
      "research.failed": "Failed retrievals",
      "dose.title": "Dose by protocol", "dose.ct_protocol": "CT: CTDIvol and DLP per acquisition protocol",
      "dose.ct_description": "CT: per study description (per study)", "dose.monthly": "Monthly median DLP",
      "dose.activity": "Administered activity per radiopharmaceutical",
      "f.from": "From", "f.to": "To", "f.protocol": "Protocol", "f.description": "Description",
      "f.station": "Station", "f.modality": "Modality", "f.agent": "Radiopharmaceutical", "f.sex": "Sex",
      "f.apply": "Apply", "f.csv": "CSV (events)",
      "study.title": "Study dose", "study.open": "Open in Orthanc Explorer", "study.ct": "CT irradiation events",
      "study.nm": "Radiopharmaceutical administrations", "study.objects": "Source objects",
      "state.retrieved": "retrieved", "state.pending": "pending", "state.failed": "failed",
      "state.not_target": "not a target", "empty": "no data", "error": "error"
    },
    ko: {
      "lang.toggle": "English", "nav.home": "홈", "nav.research": "연구 PACS", "nav.dose": "선량",
      "nav.orthanc": "Orthanc 탐색기", "index.title": "nmdose",
      "research.title": "연구 PACS: 연도별 검사 수", "research.progress": "진행 상황",
      "research.census": "전수 조사", "research.retrieve": "가져오기",
      "research.yearly": "연도 및 검사 종류별 검사 수",
      "research.new": "승인 대기 중인 새 검사명", "research.corrections": "모달리티 수정",
      "research.failed": "가져오기 실패",
      "dose.title": "프로토콜별 선량", "dose.ct_protocol": "CT: 촬영 프로토콜별 CTDIvol 및 DLP",
      "dose.ct_description": "CT: 검사명별 (검사 단위)", "dose.monthly": "월별 DLP 중앙값",
      "dose.activity": "방사성의약품별 투여 방사능",
      "f.from": "시작일", "f.to": "종료일", "f.protocol": "프로토콜", "f.description": "검사명",
      "f.station": "장비", "f.modality": "모달리티", "f.agent": "방사성의약품", "f.sex": "성별",
      "f.apply": "적용", "f.csv": "CSV (이벤트)",
      "study.title": "검사 선량", "study.open": "Orthanc 탐색기에서 열기", "study.ct": "CT 조사 이벤트",
      "study.nm": "방사성의약품 투여", "study.objects": "원본 객체",
      "state.retrieved": "가져옴", "state.pending": "대기", "state.failed": "실패",
      "state.not_target": "대상 아님", "empty": "데이터 없음", "error": "오류"
    }
  };
  var STATES = ["retrieved", "pending", "failed", "not_target"];
  var COLORS = ["#2e7d32", "#f9a825", "#c62828", "#9e9e9e", "#1565c0", "#6a1b9a", "#00838f", "#ef6c00"];
  var body = document.body;
  var root = body.getAttribute("data-root");          // the /nmdose/ folder, relative
  var orthancRoot = root + "../";                      // Orthanc's own root
  var lang = localStorage.getItem("nmdose.lang") || body.getAttribute("data-default-lang") || "en";
  var charts = {};

  function t(key) { return (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key; }

  function applyLang() {
    document.documentElement.lang = lang;
    document.querySelectorAll("[data-i18n]").forEach(function (el) {
      el.textContent = t(el.getAttribute("data-i18n"));
    });
    Object.keys(charts).forEach(function (k) { if (charts[k].relabel) charts[k].relabel(); });
  }

  function api(path, params) {
    var q = new URLSearchParams(params || {}).toString();
    return fetch(root + "api/" + path + (q ? "?" + q : ""), {credentials: "same-origin"}).then(function (r) {
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

  // Fill <table id=...> with rows; `columns` is a list of [key, header] or [key, header, fn(row) -> Node|text].
  function table(id, rows, columns) {
    var el = document.getElementById(id);
    if (!el) return;
    el.replaceChildren();
    var head = el.createTHead().insertRow();
    columns.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c[1];
      head.appendChild(th);
    });
    var tb = el.createTBody();
    if (!rows.length) {
      var td = tb.insertRow().insertCell();
      td.colSpan = columns.length;
      td.setAttribute("data-i18n", "empty");
      td.textContent = t("empty");
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
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function showError(id, err) {
    var el = document.getElementById(id);
    if (el) { el.replaceChildren(); el.insertRow().insertCell().textContent = t("error") + ": " + err.message; }
  }

  function chart(id, config) {
    if (charts[id]) charts[id].destroy();
    var canvas = document.getElementById(id);
    config.options = Object.assign({animation: false, responsive: true, maintainAspectRatio: false},
                                   config.options || {});
    charts[id] = new Chart(canvas, config);
    var points = config.data.datasets.reduce(function (n, d) {
      return n + d.data.filter(function (x) { return x !== null && x !== 0; }).length;
    }, 0);
    canvas.setAttribute("data-points", String(points));
    return charts[id];
  }

  // ----- research page
  function research() {
    api("research/yearly").then(function (d) {
      var rows = d.rows;
      table("yearly-table", rows, [["year", "Year"], ["description", "Description"],
        ["modalities", "Modalities"], ["state", "State", function (r) { return t("state." + r.state); }],
        ["studies", "N"]]);
      var years = Array.from(new Set(rows.map(function (r) { return r.year; }))).sort();
      var c = chart("yearly-chart", {
        type: "bar",
        data: {labels: years.map(String), datasets: STATES.map(function (s, i) {
          return {label: t("state." + s), backgroundColor: COLORS[i], data: years.map(function (y) {
            return rows.filter(function (r) { return r.year === y && r.state === s; })
                       .reduce(function (n, r) { return n + r.studies; }, 0);
          })};
        })},
        options: {scales: {x: {stacked: true}, y: {stacked: true}}}
      });
      c.relabel = function () {
        c.data.datasets.forEach(function (ds, i) { ds.label = t("state." + STATES[i]); });
        c.update();
      };
    }).catch(function (e) { showError("yearly-table", e); });
    api("research/descriptions/new").then(function (d) {
      table("new-table", d.rows, [["description", "Description"], ["studies", "N"],
        ["modality_sets", "Modalities"], ["first_date", "First"], ["last_date", "Last"]]);
    }).catch(function (e) { showError("new-table", e); });
    api("research/corrections").then(function (d) {
      table("corrections-table", d.rows, [["description", "Description"], ["modalities_found", "Found"],
        ["modalities_corrected", "Corrected"], ["correction_reason", "Reason"], ["studies", "N"]]);
    }).catch(function (e) { showError("corrections-table", e); });
    api("research/failed").then(function (d) {
      table("failed-table", d.rows, [["study_instance_uid", "StudyInstanceUID"], ["study_date", "Date"],
        ["description", "Description"], ["state", "State"], ["attempts", "Attempts"],
        ["last_error", "Error"], ["log_path", "Log"]]);
    }).catch(function (e) { showError("failed-table", e); });
    pollStatus();
  }

  function pollStatus() {
    [["census/status", "census-status"], ["retrieve/status", "retrieve-status"]].forEach(function (p) {
      fetch(root + p[0], {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (d) {
        var el = document.getElementById(p[1]);
        var parts = [];
        Object.keys(d).forEach(function (k) {
          var v = d[k];
          if (v !== null && typeof v !== "object") parts.push(k + "=" + v);
          else if (v && typeof v === "object" && !Array.isArray(v) && k !== "job") {
            Object.keys(v).forEach(function (k2) {
              if (typeof v[k2] !== "object") parts.push(k + "." + k2 + "=" + v[k2]);
            });
          }
        });
        el.textContent = parts.slice(0, 12).join("  ");
      }).catch(function () {});
    });
    setTimeout(pollStatus, 5000);
  }

  // ----- dose page
  function filters() {
    var out = {};
    new FormData(document.getElementById("filters")).forEach(function (v, k) { if (v) out[k] = v; });
    return out;
  }

  var STAT_COLUMNS = [["n", "N"], ["ctdivol_median", "CTDIvol median (mGy)"],
    ["ctdivol_q1", "CTDIvol Q1"], ["ctdivol_q3", "CTDIvol Q3"], ["ctdivol_mean", "CTDIvol mean"],
    ["ctdivol_p75", "CTDIvol p75"], ["dlp_median", "DLP median (mGy·cm)"], ["dlp_q1", "DLP Q1"],
    ["dlp_q3", "DLP Q3"], ["dlp_mean", "DLP mean"], ["dlp_p75", "DLP p75"]];

  function dose() {
    var f = filters();
    var csv = document.getElementById("csv-link");
    csv.href = root + "api/dose/ct-events?" + new URLSearchParams(Object.assign({format: "csv"}, f));
    api("dose/ct-protocols", Object.assign({group: "protocol"}, f)).then(function (d) {
      table("ct-table", d.rows, [["protocol", "Protocol"]].concat(STAT_COLUMNS));
      chart("ct-chart", {
        type: "bar",
        data: {labels: d.rows.map(function (r) { return r.protocol; }), datasets: [
          {label: "DLP median (mGy·cm)", backgroundColor: COLORS[4],
           data: d.rows.map(function (r) { return r.dlp_median; })},
          {label: "CTDIvol median (mGy)", backgroundColor: COLORS[6],
           data: d.rows.map(function (r) { return r.ctdivol_median; })}]}
      });
    }).catch(function (e) { showError("ct-table", e); });
    api("dose/ct-protocols", Object.assign({group: "description"}, f)).then(function (d) {
      table("ct-desc-table", d.rows, [["description", "Description"]].concat(STAT_COLUMNS));
    }).catch(function (e) { showError("ct-desc-table", e); });
    api("dose/ct-monthly", f).then(function (d) {
      chart("monthly-chart", {type: "line", data: {labels: d.rows.map(function (r) { return r.month; }),
        datasets: [{label: "DLP median (mGy·cm)", borderColor: COLORS[4],
                    data: d.rows.map(function (r) { return r.dlp_median; })}]}});
    }).catch(function () {});
    api("dose/activity", Object.assign({group: "agent"}, f)).then(function (d) {
      table("activity-table", d.rows, [["agent", "Radiopharmaceutical"], ["n", "N"],
        ["activity_median", "Activity median (MBq)"], ["activity_q1", "Q1"], ["activity_q3", "Q3"],
        ["activity_mean", "Mean"], ["per_kg_median", "MBq/kg median"], ["per_kg_mean", "MBq/kg mean"],
        ["effective_dose_mean", "E mean (mSv)"]]);
    }).catch(function (e) { showError("activity-table", e); });
    api("dose/activity-points", f).then(function (d) {
      chart("scatter-chart", {type: "scatter", data: {datasets: [{label: "MBq vs kg", backgroundColor: COLORS[5],
        data: d.rows.map(function (r) { return {x: r.weight_kg, y: r.activity_mbq}; })}]},
        options: {scales: {x: {title: {display: true, text: "kg"}}, y: {title: {display: true, text: "MBq"}}}}});
    }).catch(function () {});
  }

  // ----- study page
  function study() {
    var uid = JSON.parse(body.getAttribute("data-page-data")).uid;
    api("dose/study/" + encodeURIComponent(uid)).then(function (s) {
      var keys = ["study_date", "study_description", "manufacturer", "model_name", "station_name",
        "patient_age_years", "patient_sex", "patient_weight_kg", "ct_event_count", "ct_total_dlp_mgycm",
        "ct_effective_dose_msv", "nm_total_activity_mbq", "nm_effective_dose_msv", "total_effective_dose_msv",
        "warnings"];
      table("study-table", keys.map(function (k) { return {k: k, v: s[k]}; }), [["k", "Field"], ["v", "Value"]]);
      table("events-table", s.ct_events, [["ordinal", "#"], ["acquisition_protocol", "Protocol"],
        ["target_region", "Region"], ["acquisition_type", "Type"], ["ctdivol_mgy", "CTDIvol (mGy)"],
        ["dlp_mgycm", "DLP (mGy·cm)"], ["phantom", "Phantom"], ["kvp", "kVp"],
        ["effective_dose_msv", "E (mSv)"]]);
      table("admin-table", s.radiopharmaceuticals, [["ordinal", "#"], ["agent", "Agent"],
        ["radionuclide", "Radionuclide"], ["activity_mbq", "Activity (MBq)"], ["start_datetime", "Start"],
        ["activity_per_kg_mbq", "MBq/kg"], ["effective_dose_msv", "E (mSv)"], ["source", "Source"]]);
      table("objects-table", s.objects, [["sop_instance_uid", "SOP Instance UID"], ["kind", "Kind"],
        ["modality", "Modality"], ["status", "Status"], ["warnings", "Warnings"]]);
      if (s.orthanc_study_id) {
        var a = document.getElementById("orthanc-link");
        a.href = orthancRoot + "app/explorer.html#study?uuid=" + encodeURIComponent(s.orthanc_study_id);
        a.hidden = false;
      }
    }).catch(function (e) { showError("study-table", e); });
  }

  document.getElementById("lang-toggle").addEventListener("click", function () {
    lang = lang === "ko" ? "en" : "ko";
    localStorage.setItem("nmdose.lang", lang);
    applyLang();
  });
  var form = document.getElementById("filters");
  if (form) form.addEventListener("submit", function (ev) { ev.preventDefault(); dose(); });
  applyLang();
  var page = body.getAttribute("data-page");
  if (page === "research") research();
  else if (page === "dose") dose();
  else if (page === "study") study();
})();
