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
      "research.forward": "Forwarding to the dose PACS not complete",
      "dose.title": "Dose by protocol", "dose.ct_protocol": "CT: CTDIvol and DLP per acquisition protocol",
      "dose.ct_description": "CT: per study description (per study)", "dose.monthly": "Monthly median DLP",
      "dose.activity": "Administered activity per radiopharmaceutical",
      "f.from": "From", "f.to": "To", "f.protocol": "Protocol", "f.description": "Description",
      "f.station": "Station", "f.modality": "Modality", "f.agent": "Radiopharmaceutical", "f.sex": "Sex",
      "f.apply": "Apply", "f.csv": "CSV (events)",
      "study.title": "Study dose", "study.open": "Open in Orthanc Explorer", "study.ct": "CT irradiation events",
      "study.nm": "Radiopharmaceutical administrations", "study.objects": "Source objects",
      "state.retrieved": "retrieved", "state.pending": "pending", "state.failed": "failed",
      "state.not_target": "not a target", "empty": "no data", "error": "error",
      "f.age": "Age (years)", "f.weight": "Weight (kg)", "f.min": "minimum (inclusive)",
      "f.max": "maximum (exclusive)", "f.xlsx": "XLSX (events, one sheet per protocol)",
      "f.xlsx_activity": "XLSX (activity, one sheet per agent)",
      "dose.box_hint": "Box: quartiles; line: median; whiskers: most extreme values within 1.5 IQR. " +
        "Red dashes: reference levels (orange: proposed or example).",
      "dose.effective": "Effective dose per exam (per study)", "dose.outliers": "Outliers",
      "dose.outliers_hint": "Above a reference level that applies, or above the 95th percentile of their " +
        "protocol or agent in the filtered data.",
      "dose.levels": "Reference levels", "dose.dead_letter": "Dose files that failed",
      "study.effective": "Effective dose: values, coefficients and their sources",
      "msg.dose_record": "Dose record of this study",
      "chart.ctdivol": "CTDIvol (mGy)", "chart.dlp": "DLP (mGy·cm)", "chart.dlp_study": "DLP per study (mGy·cm)",
      "chart.ctdivol_study": "mean CTDIvol per study (mGy)", "chart.activity": "Activity (MBq)",
      "chart.per_kg": "Activity per kg (MBq/kg)", "chart.level": "Reference level",
      "col.protocol": "Protocol", "col.description": "Description", "col.agent": "Radiopharmaceutical",
      "col.n": "N", "col.studies": "Studies", "col.date": "Date", "col.study": "Study", "col.group": "Protocol / agent",
      "col.quantity": "Quantity", "col.value": "Value", "col.level": "Level", "col.ratio": "× level",
      "col.reason": "Reason", "col.level_name": "Reference", "col.orthanc": "Orthanc", "col.name": "Name",
      "col.modality": "Modality", "col.per": "Per", "col.status": "Status", "col.source": "Source",
      "col.year": "Year", "col.match": "Applies to", "col.age": "Age band", "col.file": "File",
      "col.error": "Error", "col.first_seen": "First seen", "col.last_seen": "Last seen",
      "col.attempts": "Attempts", "col.origin": "Source", "col.ct_n": "N (CT E)",
      "col.ct_median": "CT E median (mSv)", "col.ct_mean": "CT E mean (mSv)", "col.nm_n": "N (NM E)",
      "col.nm_median": "NM E median (mSv)", "col.nm_mean": "NM E mean (mSv)", "col.total_n": "N (total)",
      "col.total_median": "Total E median (mSv)", "col.total_mean": "Total E mean (mSv)",
      "col.coef_sources": "Coefficient sources", "col.part": "Part", "col.e": "E (mSv)",
      "col.coefficient": "Coefficient", "col.coef_source": "Coefficient source / note",
      "col.ctdivol_p95": "CTDIvol p95", "col.dlp_p95": "DLP p95",
      "reason.reference_level": "above reference level", "reason.p95": "above p95 of its group",
      "status.official": "official DRL", "status.proposed": "proposed, not an adopted DRL",
      "status.example": "example, not an official DRL", "kind.ct_event": "CT event", "kind.ct_study": "CT exam",
      "kind.administration": "administration", "part.ct_total": "CT total", "part.nm_total": "NM total",
      "part.total": "Total (CT + NM)", "part.event": "CT event", "part.admin": "Administration",
      "part.notes": "Notes", "unit.k": "mSv/(mGy·cm)", "unit.e": "mSv/MBq", "open": "open in Orthanc",
      "q.ctdivol_mgy": "CTDIvol", "q.dlp_mgycm": "DLP", "q.activity_mbq": "activity",
      "q.activity_mbq_per_kg": "activity per kg", "per.event": "irradiation event",
      "per.study": "examination (total)", "per.administration": "administration"
    },
    ko: {
      "lang.toggle": "English", "nav.home": "홈", "nav.research": "연구 PACS", "nav.dose": "선량",
      "nav.orthanc": "Orthanc 탐색기", "index.title": "nmdose",
      "research.title": "연구 PACS: 연도별 검사 수", "research.progress": "진행 상황",
      "research.census": "전수 조사", "research.retrieve": "가져오기",
      "research.yearly": "연도 및 검사 종류별 검사 수",
      "research.new": "승인 대기 중인 새 검사명", "research.corrections": "모달리티 수정",
      "research.failed": "가져오기 실패",
      "research.forward": "선량 PACS 전송 미완료",
      "dose.title": "프로토콜별 선량", "dose.ct_protocol": "CT: 촬영 프로토콜별 CTDIvol 및 DLP",
      "dose.ct_description": "CT: 검사명별 (검사 단위)", "dose.monthly": "월별 DLP 중앙값",
      "dose.activity": "방사성의약품별 투여 방사능",
      "f.from": "시작일", "f.to": "종료일", "f.protocol": "프로토콜", "f.description": "검사명",
      "f.station": "장비", "f.modality": "모달리티", "f.agent": "방사성의약품", "f.sex": "성별",
      "f.apply": "적용", "f.csv": "CSV (이벤트)",
      "study.title": "검사 선량", "study.open": "Orthanc 탐색기에서 열기", "study.ct": "CT 조사 이벤트",
      "study.nm": "방사성의약품 투여", "study.objects": "원본 객체",
      "state.retrieved": "가져옴", "state.pending": "대기", "state.failed": "실패",
      "state.not_target": "대상 아님", "empty": "데이터 없음", "error": "오류",
      "f.age": "나이 (세)", "f.weight": "체중 (kg)", "f.min": "최소 (포함)", "f.max": "최대 (미포함)",
      "f.xlsx": "XLSX (이벤트, 프로토콜별 시트)", "f.xlsx_activity": "XLSX (방사능, 의약품별 시트)",
      "dose.box_hint": "상자: 사분위수; 선: 중앙값; 수염: 1.5 IQR 이내의 최댓값·최솟값. " +
        "빨간 점선: 참고수준 (주황: 제안값 또는 예시).",
      "dose.effective": "검사별 유효선량 (검사 단위)", "dose.outliers": "이상값",
      "dose.outliers_hint": "적용되는 참고수준을 넘거나, 필터된 자료에서 프로토콜 또는 의약품의 " +
        "95 백분위수를 넘는 값.",
      "dose.levels": "진단참고수준", "dose.dead_letter": "처리 실패한 선량 파일",
      "study.effective": "유효선량: 값, 환산계수와 출처",
      "msg.dose_record": "이 검사의 선량 기록",
      "chart.ctdivol": "CTDIvol (mGy)", "chart.dlp": "DLP (mGy·cm)", "chart.dlp_study": "검사당 DLP (mGy·cm)",
      "chart.ctdivol_study": "검사당 평균 CTDIvol (mGy)", "chart.activity": "방사능 (MBq)",
      "chart.per_kg": "체중당 방사능 (MBq/kg)", "chart.level": "참고수준",
      "col.protocol": "프로토콜", "col.description": "검사명", "col.agent": "방사성의약품",
      "col.n": "N", "col.studies": "검사 수", "col.date": "날짜", "col.study": "검사", "col.group": "프로토콜 / 의약품",
      "col.quantity": "양", "col.value": "값", "col.level": "기준값", "col.ratio": "× 기준",
      "col.reason": "사유", "col.level_name": "기준", "col.orthanc": "Orthanc", "col.name": "이름",
      "col.modality": "모달리티", "col.per": "단위", "col.status": "상태", "col.source": "출처",
      "col.year": "연도", "col.match": "적용 대상", "col.age": "연령대", "col.file": "파일",
      "col.error": "오류", "col.first_seen": "처음", "col.last_seen": "마지막",
      "col.attempts": "시도", "col.origin": "출처", "col.ct_n": "N (CT 유효선량)",
      "col.ct_median": "CT 유효선량 중앙값 (mSv)", "col.ct_mean": "CT 유효선량 평균 (mSv)",
      "col.nm_n": "N (핵의학 유효선량)", "col.nm_median": "핵의학 유효선량 중앙값 (mSv)",
      "col.nm_mean": "핵의학 유효선량 평균 (mSv)", "col.total_n": "N (합계)",
      "col.total_median": "총 유효선량 중앙값 (mSv)", "col.total_mean": "총 유효선량 평균 (mSv)",
      "col.coef_sources": "환산계수 출처", "col.part": "구분", "col.e": "유효선량 (mSv)",
      "col.coefficient": "환산계수", "col.coef_source": "환산계수 출처 / 비고",
      "col.ctdivol_p95": "CTDIvol 95 백분위수", "col.dlp_p95": "DLP 95 백분위수",
      "reason.reference_level": "참고수준 초과", "reason.p95": "그룹 95 백분위수 초과",
      "status.official": "공식 진단참고수준", "status.proposed": "제안값, 채택된 진단참고수준 아님",
      "status.example": "예시, 공식 진단참고수준 아님", "kind.ct_event": "CT 이벤트", "kind.ct_study": "CT 검사",
      "kind.administration": "투여", "part.ct_total": "CT 합계", "part.nm_total": "핵의학 합계",
      "part.total": "합계 (CT + 핵의학)", "part.event": "CT 이벤트", "part.admin": "투여",
      "part.notes": "비고", "unit.k": "mSv/(mGy·cm)", "unit.e": "mSv/MBq", "open": "Orthanc에서 열기",
      "q.ctdivol_mgy": "CTDIvol", "q.dlp_mgycm": "DLP", "q.activity_mbq": "방사능",
      "q.activity_mbq_per_kg": "체중당 방사능", "per.event": "조사 이벤트",
      "per.study": "검사 (합계)", "per.administration": "투여"
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
    document.querySelectorAll("[data-i18n-title]").forEach(function (el) {
      el.title = t(el.getAttribute("data-i18n-title"));
    });
    Object.keys(charts).forEach(function (k) { if (charts[k].relabel) charts[k].relabel(); });
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

  // Fill <table id=...> with rows; `columns` is a list of [key, header] or [key, header, fn(row) -> Node|text].
  function table(id, rows, columns) {
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

  // A text node that follows the language toggle.
  function label(key) {
    var span = document.createElement("span");
    span.setAttribute("data-i18n", key);
    span.textContent = t(key);
    return span;
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
  function boxChart(id, by, series) {
    var labels = [];
    series.forEach(function (s) {
      s.rows.forEach(function (r) { if (labels.indexOf(r[by]) < 0) labels.push(r[by]); });
    });
    labels.sort();
    var scales = {};
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
                      title: {display: true, text: s.unit}, grid: {drawOnChartArea: k === 0}};
      return {label: t(s.key), i18n: s.key, yAxisID: axis, backgroundColor: s.color + "99",
              borderColor: s.color, borderWidth: 1,
              data: rows.map(function (r) { return r ? [r.q1, r.q3] : null; }),
              box: rows, refs: rows.map(function (r) { return r ? r.levels || [] : []; })};
    });
    datasets.push({label: t("chart.level"), i18n: "chart.level", type: "line", data: [],
                   borderColor: "#d50000", borderDash: [6, 3], backgroundColor: "#d50000"});
    var c = chart(id, {type: "bar", data: {labels: labels, datasets: datasets}, options: {scales: scales,
      plugins: {tooltip: {callbacks: {label: function (item) {
        var b = item.dataset.box && item.dataset.box[item.dataIndex];
        if (!b) return item.dataset.label;
        return item.dataset.label + ": " + fmt(b.median) + " (Q1 " + fmt(b.q1) + ", Q3 " + fmt(b.q3) +
          ", n " + b.n + ")";
      }}}}}});
    c.relabel = function () {
      c.data.datasets.forEach(function (ds) { ds.label = t(ds.i18n); });
      c.update();
    };
    return c;
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
    api("research/forward-incomplete").then(function (d) {
      table("forward-table", d.rows, [["study_instance_uid", "StudyInstanceUID"], ["state", "State"],
        ["stuck", "Stuck"], ["selected", "Selected"], ["forwarded", "Forwarded"], ["missing", "Missing"],
        ["reason", "Reason"]]);
    }).catch(function (e) { showError("forward-table", e); });
    pollStatus();
  }

  function pollStatus() {
    [["census/status", "census-status"], ["retrieve/status", "retrieve-status"]].forEach(function (p) {
      window.nmdoseFetch(root + p[0], {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (d) {
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
    ["ctdivol_p75", "CTDIvol p75"], ["ctdivol_p95", "col.ctdivol_p95"], ["dlp_median", "DLP median (mGy·cm)"],
    ["dlp_q1", "DLP Q1"], ["dlp_q3", "DLP Q3"], ["dlp_mean", "DLP mean"], ["dlp_p75", "DLP p75"],
    ["dlp_p95", "col.dlp_p95"]];
  var UNITS = {ctdivol_mgy: "mGy", dlp_mgycm: "mGy·cm", activity_mbq: "MBq", activity_mbq_per_kg: "MBq/kg"};

  function statusLabel(status) { return status ? label("status." + status) : ""; }

  function studyLink(uid) { return link(root + "ui/study/" + encodeURIComponent(uid), uid); }

  var doseGeneration = 0;
  var STALE = new Error("stale");

  function dose() {
    var f = filters();
    var gen = ++doseGeneration;
    // Answers to an earlier Apply are dropped, so a slow old request never overwrites newer numbers.
    function call(path, params) {
      return api(path, params).then(function (d) {
        if (gen !== doseGeneration) throw STALE;
        return d;
      });
    }
    var errorBox = document.getElementById("filter-error");
    var failed = false;
    function fail(id) {
      return function (e) {
        if (e === STALE) return;
        showError(id, e);
        if (!failed) { failed = true; errorBox.textContent = t("error") + ": " + e.message; errorBox.hidden = false; }
      };
    }
    errorBox.hidden = true;
    function exportLink(id, path, format) {
      document.getElementById(id).href = root + "api/dose/" + path + "?" +
        new URLSearchParams(Object.assign({format: format}, f));
    }
    exportLink("csv-link", "ct-events", "csv");
    exportLink("xlsx-link", "ct-events", "xlsx");
    exportLink("xlsx-activity-link", "activity-points", "xlsx");

    call("dose/ct-protocols", Object.assign({group: "protocol"}, f)).then(function (d) {
      table("ct-table", d.rows, [["protocol", "col.protocol"]].concat(STAT_COLUMNS));
    }).catch(fail("ct-table"));
    Promise.all([call("dose/box", Object.assign({measure: "ctdivol", group: "protocol"}, f)),
                 call("dose/box", Object.assign({measure: "dlp", group: "protocol"}, f))]).then(function (d) {
      boxChart("ct-chart", "protocol", [
        {key: "chart.ctdivol", unit: "mGy", rows: d[0].rows, color: COLORS[6]},
        {key: "chart.dlp", unit: "mGy·cm", rows: d[1].rows, color: COLORS[4]}]);
    }).catch(fail("ct-table"));
    call("dose/ct-protocols", Object.assign({group: "description"}, f)).then(function (d) {
      table("ct-desc-table", d.rows, [["description", "col.description"]].concat(STAT_COLUMNS));
    }).catch(fail("ct-desc-table"));
    Promise.all([call("dose/box", Object.assign({measure: "ctdivol", group: "description"}, f)),
                 call("dose/box", Object.assign({measure: "dlp", group: "description"}, f))]).then(function (d) {
      boxChart("ct-desc-chart", "description", [
        {key: "chart.ctdivol_study", unit: "mGy", rows: d[0].rows, color: COLORS[6]},
        {key: "chart.dlp_study", unit: "mGy·cm", rows: d[1].rows, color: COLORS[4]}]);
    }).catch(fail("ct-desc-table"));
    call("dose/ct-monthly", f).then(function (d) {
      chart("monthly-chart", {type: "line", data: {labels: d.rows.map(function (r) { return r.month; }),
        datasets: [{label: "DLP median (mGy·cm)", borderColor: COLORS[4],
                    data: d.rows.map(function (r) { return r.dlp_median; })}]}});
    }).catch(function () {});
    call("dose/activity", Object.assign({group: "agent"}, f)).then(function (d) {
      table("activity-table", d.rows, [["agent", "col.agent"], ["n", "col.n"],
        ["activity_median", "Activity median (MBq)"], ["activity_q1", "Q1"], ["activity_q3", "Q3"],
        ["activity_mean", "Mean"], ["activity_p95", "p95"], ["per_kg_median", "MBq/kg median"],
        ["per_kg_mean", "MBq/kg mean"], ["per_kg_p95", "MBq/kg p95"], ["effective_dose_mean", "E mean (mSv)"]]);
    }).catch(fail("activity-table"));
    Promise.all([call("dose/box", Object.assign({measure: "activity", group: "agent"}, f)),
                 call("dose/box", Object.assign({measure: "per_kg", group: "agent"}, f))]).then(function (d) {
      boxChart("activity-chart", "agent", [
        {key: "chart.activity", unit: "MBq", rows: d[0].rows, color: COLORS[5]},
        {key: "chart.per_kg", unit: "MBq/kg", rows: d[1].rows, color: COLORS[7]}]);
    }).catch(fail("activity-table"));
    call("dose/activity-points", f).then(function (d) {
      chart("scatter-chart", {type: "scatter", data: {datasets: [{label: "MBq vs kg", backgroundColor: COLORS[5],
        data: d.rows.map(function (r) { return {x: r.weight_kg, y: r.activity_mbq}; })}]},
        options: {scales: {x: {title: {display: true, text: "kg"}}, y: {title: {display: true, text: "MBq"}}}}});
    }).catch(function () {});
    call("dose/effective-dose", f).then(function (d) {
      table("effective-table", d.rows, [["description", "col.description"], ["studies", "col.studies"],
        ["ct_n", "col.ct_n"], ["ct_median", "col.ct_median"], ["ct_mean", "col.ct_mean"], ["nm_n", "col.nm_n"],
        ["nm_median", "col.nm_median"], ["nm_mean", "col.nm_mean"], ["total_n", "col.total_n"],
        ["total_median", "col.total_median"], ["total_mean", "col.total_mean"],
        ["sources", "col.coef_sources", function (r) {
          return r.ct_sources.concat(r.nm_sources).join(" · ");
        }]]);
    }).catch(fail("effective-table"));
    call("dose/outliers", f).then(function (d) {
      document.getElementById("outlier-count").textContent = String(d.count);
      table("outlier-table", d.rows, [["study_date", "col.date"],
        ["study_instance_uid", "col.study", function (r) { return studyLink(r.study_instance_uid); }],
        ["study_description", "col.description"],
        ["kind", "col.group", function (r) {
          var span = document.createElement("span");
          span.appendChild(label("kind." + r.kind));
          if (r.group !== null) span.appendChild(document.createTextNode(": " + r.group));
          if (r.ordinal !== null && r.kind === "ct_event") span.appendChild(document.createTextNode(" #" + r.ordinal));
          return span;
        }],
        ["quantity", "col.quantity", function (r) { return label("q." + r.quantity); }],
        ["value", "col.value", function (r) {
          return fmt(r.value) + " " + UNITS[r.quantity];
        }], ["level", "col.level", function (r) { return fmt(r.level) + " " + UNITS[r.quantity]; }],
        ["ratio", "col.ratio"], ["reason", "col.reason", function (r) { return label("reason." + r.reason); }],
        ["level_name", "col.level_name", function (r) {
          if (!r.level_name) return "";
          var span = document.createElement("span");
          span.appendChild(document.createTextNode(r.level_name + " ("));
          span.appendChild(statusLabel(r.level_status));
          span.appendChild(document.createTextNode(")"));
          return span;
        }],
        ["link", "col.orthanc", function (r) {
          var a = link(root + r.link, "");
          a.className = "orthanc-link";
          a.appendChild(label("open"));
          return a;
        }]]);
    }).catch(fail("outlier-table"));
    call("dose/reference-levels").then(function (d) {
      table("levels-table", d.rows, [["name", "col.name"], ["modality", "col.modality"],
        ["quantity", "col.quantity", function (r) { return label("q." + r.quantity); }],
        ["per", "col.per", function (r) { return label("per." + r.per); }], ["value", "col.value", function (r) {
          return fmt(r.value) + " " + r.unit;
        }], ["status", "col.status", function (r) { return statusLabel(r.status); }],
        ["match", "col.match", function (r) {
          var parts = [];
          ["protocols", "descriptions", "target_regions", "agents"].forEach(function (k) {
            if (r[k].length) parts.push(k + ": " + r[k].join(" | "));
          });
          return parts.join("; ");
        }], ["age", "col.age", function (r) {
          if (r.age_min === null && r.age_max === null) return "";
          return (r.age_min === null ? "" : fmt(r.age_min)) + "–" + (r.age_max === null ? "" : fmt(r.age_max));
        }], ["source", "col.source"], ["year", "col.year"]]);
    }).catch(fail("levels-table"));
    call("dose/dead-letter").then(function (d) {
      document.getElementById("dead-letter-count").textContent = String(d.open);
      table("dead-letter-table", d.rows, [["file_path", "col.file"], ["error", "col.error"],
        ["source", "col.origin"], ["attempts", "col.attempts"], ["first_seen", "col.first_seen"],
        ["last_seen", "col.last_seen"]]);
    }).catch(fail("dead-letter-table"));
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
      var sources = (s.derived || {}).sources || {};
      var ctSource = (s.derived || {}).age_band_years === null || (s.derived || {}).age_band_years === undefined
        ? sources.ct_k_adult : sources.ct_k_child;
      var eff = [
        {part: label("part.ct_total"), e: s.ct_effective_dose_msv, coef: "",
         src: s.ct_effective_dose_msv === null ? "" : ctSource || ""},
        {part: label("part.nm_total"), e: s.nm_effective_dose_msv, coef: "",
         src: s.nm_effective_dose_msv === null ? "" : sources.nm || ""},
        {part: label("part.total"), e: s.total_effective_dose_msv, coef: "", src: ""}];
      s.ct_events.forEach(function (ev) {
        var part = document.createElement("span");
        part.appendChild(label("part.event"));
        part.appendChild(document.createTextNode(" #" + ev.ordinal + " " + (ev.target_region || "")));
        eff.push({part: part, e: ev.effective_dose_msv, src: ev.k_source || "",
                  coef: ev.k_msv_per_mgycm === null ? "" : String(ev.k_msv_per_mgycm) + " " + t("unit.k")});
      });
      s.radiopharmaceuticals.forEach(function (a) {
        var part = document.createElement("span");
        part.appendChild(label("part.admin"));
        part.appendChild(document.createTextNode(" #" + a.ordinal + " " + (a.agent || "")));
        eff.push({part: part, e: a.effective_dose_msv, src: a.coefficient_note || "",
                  coef: a.coefficient_msv_per_mbq === null ? "" : String(a.coefficient_msv_per_mbq) + " " + t("unit.e")});
      });
      ((s.derived || {}).notes || []).forEach(function (n) {
        eff.push({part: label("part.notes"), e: null, coef: "", src: n});
      });
      table("study-effective-table", eff, [["part", "col.part", function (r) { return r.part; }],
        ["e", "col.e"], ["coef", "col.coefficient"], ["src", "col.coef_source"]]);
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
