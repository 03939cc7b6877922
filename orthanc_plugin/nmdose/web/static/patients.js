// nmdose patient cumulative dose page (/nmdose/ui/patients): the patients over a threshold in a rolling window
// from /nmdose/api/dose/patients, and a patient's timeline on click. Every value goes into the DOM as text
// (textContent), never as HTML; English and Korean labels, the language shared with the other pages.
(function () {
  "use strict";
  var I18N = {
    en: {
      "lang.toggle": "한국어", "nav.home": "Home", "nav.research": "Research PACS", "nav.dose": "Dose",
      "nav.patients": "Patients", "nav.orthanc": "Orthanc Explorer", "title": "Patient cumulative dose",
      "hint": "Patients by pseudonym (a keyed hash of the PatientID; no PatientID is shown). Cumulative dose: " +
        "the largest sum of the studies' total effective dose (CT + NM) over a rolling window ending at one " +
        "of the patient's studies.",
      "f.window": "Window (years)", "f.threshold": "Threshold (mSv)", "f.limit": "Patients", "apply": "Apply",
      "csv": "CSV", "summary": "{n} of {total} patients at or above {threshold} mSv in {years} year(s); " +
        "{nokey} studies without a patient key",
      "empty": "no patient reaches the threshold", "error": "The server refused the request: ",
      "timeline": "Timeline of {p} (rolling window: {years} year(s))", "incomplete": "⚠ lower bound",
      "unknown": "unknown", "nm_missing": "NM part missing",
      "c.pseudonym": "Patient (pseudonym)", "c.cumulative_msv": "Cumulative (mSv)", "c.window_start": "Window from",
      "c.window_end": "Window to", "c.window_studies": "Studies in window", "c.incomplete": "Complete?",
      "c.studies": "Studies", "c.all_time_msv": "All studies (mSv)", "c.last_study": "Last study",
      "c.study_date": "Date", "c.study_description": "Description", "c.modality": "Modality",
      "c.ct_msv": "CT E (mSv)", "c.nm_msv": "NM E (mSv)", "c.total_msv": "Total E (mSv)",
      "c.running_msv": "Running sum (mSv)", "c.window_msv": "Window sum (mSv)", "yes": "yes"
    },
    ko: {
      "lang.toggle": "English", "nav.home": "홈", "nav.research": "연구 PACS", "nav.dose": "선량",
      "nav.patients": "환자", "nav.orthanc": "Orthanc Explorer", "title": "환자 누적 선량",
      "hint": "환자는 가명(환자 ID의 키 해시)으로 표시되며 환자 ID는 보이지 않습니다. 누적 선량: 환자의 검사 하나에서 " +
        "끝나는 이동 기간 동안 검사별 총 유효선량(CT + 핵의학)의 합 중 가장 큰 값.",
      "f.window": "기간 (년)", "f.threshold": "기준 (mSv)", "f.limit": "환자 수", "apply": "적용",
      "csv": "CSV", "summary": "{years}년 동안 {threshold} mSv 이상인 환자 {total}명 중 {n}명; " +
        "환자 키가 없는 검사 {nokey}건",
      "empty": "기준에 이른 환자가 없습니다", "error": "서버가 요청을 거부했습니다: ",
      "timeline": "{p}의 검사 이력 (이동 기간: {years}년)", "incomplete": "⚠ 하한값",
      "unknown": "알 수 없음", "nm_missing": "핵의학 부분 없음",
      "c.pseudonym": "환자 (가명)", "c.cumulative_msv": "누적 (mSv)", "c.window_start": "기간 시작",
      "c.window_end": "기간 끝", "c.window_studies": "기간 내 검사", "c.incomplete": "완전?",
      "c.studies": "검사 수", "c.all_time_msv": "전체 검사 (mSv)", "c.last_study": "최근 검사",
      "c.study_date": "날짜", "c.study_description": "검사명", "c.modality": "modality",
      "c.ct_msv": "CT 유효선량 (mSv)", "c.nm_msv": "핵의학 유효선량 (mSv)", "c.total_msv": "총 유효선량 (mSv)",
      "c.running_msv": "누적 합 (mSv)", "c.window_msv": "기간 합 (mSv)", "yes": "예"
    }
  };
  var PATIENT_COLUMNS = ["pseudonym", "cumulative_msv", "window_start", "window_end", "window_studies",
    "incomplete", "studies", "all_time_msv", "last_study"];
  var TIMELINE_COLUMNS = ["study_date", "study_description", "modality", "ct_msv", "nm_msv", "total_msv",
    "running_msv", "window_msv"];
  var lang = localStorage.getItem("nmdose.lang") || "en";
  var get = window.nmdoseFetch || window.fetch.bind(window);
  var form = document.getElementById("patients-filters");
  var errorBox = document.getElementById("patients-error");
  var summary = document.getElementById("patients-summary");
  var table = document.getElementById("patients-table");
  var timelineTitle = document.getElementById("timeline-title");
  var timelineTable = document.getElementById("timeline-table");
  var csv = document.getElementById("patients-csv");
  var last = null;
  var shown = null;

  function t(key, values) {
    var s = (I18N[lang] && I18N[lang][key]) || I18N.en[key] || key;
    Object.keys(values || {}).forEach(function (k) { s = s.split("{" + k + "}").join(String(values[k])); });
    return s;
  }

  function number(v) {
    return typeof v === "number" ? (Math.round(v * 100) / 100).toString() : (v === null || v === undefined ? "" : String(v));
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function header(el, columns) {
    var row = el.createTHead().insertRow();
    columns.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = t("c." + c);
      row.appendChild(th);
    });
  }

  function params() {
    var p = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (String(value).trim() !== "") p.set(key, String(value).trim());
    });
    return p;
  }

  function fail(resp) {
    return resp.json().then(function (body) {
      errorBox.hidden = false;
      errorBox.textContent = t("error") + (body && body.error ? body.error : resp.status);
    }, function () {
      errorBox.hidden = false;
      errorBox.textContent = t("error") + resp.status;
    });
  }

  function renderPatients() {
    clear(table);
    if (!last) return;
    summary.textContent = t("summary", {n: last.count, total: last.total, threshold: last.threshold_msv,
      years: last.window_years, nokey: last.studies_without_patient_key});
    header(table, PATIENT_COLUMNS);
    var body = table.createTBody();
    if (!last.rows.length) {
      var cell = body.insertRow().insertCell();
      cell.colSpan = PATIENT_COLUMNS.length;
      cell.textContent = t("empty");
    }
    last.rows.forEach(function (r) {
      var tr = body.insertRow();
      tr.className = "clickable";
      tr.tabIndex = 0;
      PATIENT_COLUMNS.forEach(function (c) {
        var v = r[c];
        if (c === "incomplete") v = v ? t("incomplete") : t("yes");
        tr.insertCell().textContent = number(v);
      });
      tr.addEventListener("click", function () { loadTimeline(r.pseudonym); });
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter") loadTimeline(r.pseudonym); });
    });
  }

  function renderTimeline() {
    clear(timelineTable);
    if (!shown) { timelineTitle.hidden = true; return; }
    timelineTitle.hidden = false;
    timelineTitle.textContent = t("timeline", {p: shown.pseudonym, years: shown.window_years});
    header(timelineTable, TIMELINE_COLUMNS);
    var body = timelineTable.createTBody();
    shown.rows.forEach(function (r) {
      var tr = body.insertRow();
      TIMELINE_COLUMNS.forEach(function (c) {
        var v = number(r[c]);
        if (c === "total_msv" && r.total_unknown) v = r.nm_part_missing ? t("nm_missing") : t("unknown");
        tr.insertCell().textContent = v;
      });
    });
  }

  function load() {
    var p = params();
    errorBox.hidden = true;
    var q = p.toString();
    var exportParams = new URLSearchParams(p);
    exportParams.set("format", "csv");
    csv.setAttribute("href", "../api/dose/patients?" + exportParams.toString());
    get("../api/dose/patients" + (q ? "?" + q : "")).then(function (resp) {
      if (!resp.ok) return fail(resp);
      return resp.json().then(function (data) { last = data; renderPatients(); });
    });
  }

  function loadTimeline(pseudonym) {
    var years = params().get("window_years") || "1";
    var url = "../api/dose/patients/" + encodeURIComponent(pseudonym) + "?window_years=" + encodeURIComponent(years);
    get(url).then(function (resp) {
      if (!resp.ok) return fail(resp);
      return resp.json().then(function (data) { shown = data; renderTimeline(); });
    });
  }

  function translate() {
    document.documentElement.lang = lang;
    Array.prototype.forEach.call(document.querySelectorAll("[data-t]"), function (el) {
      el.textContent = t(el.getAttribute("data-t"));
    });
    renderPatients();
    renderTimeline();
  }

  document.getElementById("patients-lang").addEventListener("click", function () {
    lang = lang === "ko" ? "en" : "ko";
    localStorage.setItem("nmdose.lang", lang);
    translate();
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); load(); });
  translate();
  load();
})();
